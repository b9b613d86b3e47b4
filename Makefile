# Thin targets over the msc-response CLI and standard tools. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := $(BIN)/msc-response
STAMP := $(VENV)/.installed

.PHONY: help install test lint demo bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its pinned dependencies and dev tools

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint ## ruff + the whole pytest suite (slow end-to-end tests included)
	$(BIN)/pytest

demo: $(STAMP) ## the main job end to end on the embedded default (simulated data, local MLflow store)
	$(CLI) scores examples/visits.csv outputs/visits_scored.csv
	@cat outputs/visits_scored.csv

bench: $(STAMP) ## benchmarks; results in benchmarks/results/*.json
	$(BIN)/python benchmarks/bench_scores.py

clean: ## remove generated outputs (keeps .venv)
	rm -rf outputs data reports benchmarks/results/*.json
