# Thin targets over the msc-response CLI and standard tools. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := $(BIN)/msc-response
STAMP := $(VENV)/.installed

EXPERIMENTS := $(wildcard experiments/*.yaml)
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: help install test test-fast lint demo data train score score-one report ui bench clean

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

test-fast: lint ## ruff + the tests that need neither MLflow nor Spark (about 30 s)
	$(BIN)/pytest -m "not slow"

data: $(STAMP) ## SIMULATED data: the default trial cohort (data/trial) and a 2,000-patient screening cohort
	$(CLI) simulate --design trial --seed 20250238 --out data/trial
	$(CLI) simulate --design screening --n-patients 2000 --seed 7 --out data/screening

train: $(STAMP) ## train the shipped experiments (experiments/*.yaml) on data/trial; summaries in outputs/
	@test -d data/trial || $(MAKE) --no-print-directory data
	@for cfg in $(EXPERIMENTS); do \
	  name=$$(basename $$cfg .yaml); \
	  $(CLI) train --config $$cfg --summary outputs/train_$$name.json || exit $$?; \
	done

score: $(STAMP) ## score the SIMULATED screening cohort with each experiment's champion (else, loudly, its exploratory model)
	@test -d data/screening || $(MAKE) --no-print-directory data
	@$(MAKE) --no-print-directory score-one NAME=child-pugh-day28 OUT=outputs/predictions_child_pugh.csv ARGS="--explain 3 --regimens all"
	@$(MAKE) --no-print-directory score-one NAME=meld-day28 OUT=outputs/predictions_meld.csv ARGS="--explain 3"

# the champion if one was promoted; else, saying so loudly, the exploratory (below Riley's
# minimum sample size) or the latest candidate version
score-one:
	@alias=$$($(BIN)/python -c 'import sys; from msc_response.registry.registration import scoring_alias; print(scoring_alias(sys.argv[1]))' $(NAME)) || exit $$?; \
	if [ "$$alias" != champion ]; then \
	  echo "!!! WARNING: $(NAME) has no champion. Scoring its $$alias model: NOT validated for use" >&2; \
	  echo "!!! (too few patients, or it did not beat the baseline); treat its predictions as exploratory." >&2; \
	fi; \
	$(CLI) score --model models:/$(NAME)@$$alias --data data/screening --out $(OUT) $(ARGS)

demo: $(STAMP) ## the main job end to end on the embedded default (SIMULATED data, local MLflow store)
	$(CLI) scores examples/visits.csv outputs/visits_scored.csv
	$(MAKE) --no-print-directory data train score
	@echo
	@echo "Demo done (all data SIMULATED):"
	@echo "  predictions:    outputs/predictions_child_pugh.csv, outputs/predictions_meld.csv (+ .rejected.csv)"
	@echo "  run summaries:  outputs/train_*.json, outputs/predictions_*.summary.json"
	@echo "  MLflow store:   mlruns/ (sqlite:///mlruns/mlflow.db); browse it with 'make ui'"
	@for cfg in $(EXPERIMENTS); do \
	  name=$$(sed -n 's/^name: *//p' $$cfg); \
	  echo "  report:         $$(ls -1t reports/$$name/*/index.html | grep -v /validation- | head -1)"; \
	done

report: $(STAMP) ## remake the report of each experiment's latest training run: reports/<experiment>/<run>/index.html
	@for cfg in $(EXPERIMENTS); do \
	  $(CLI) report --experiment $$(sed -n 's/^name: *//p' $$cfg) || exit $$?; \
	done

ui: $(STAMP) ## the MLflow UI on http://127.0.0.1:5000 over the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

bench: $(STAMP) ## benchmarks; results in benchmarks/results/*.json (about two hours on 2 cores)
	$(BIN)/python benchmarks/bench_scores.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_honest_validation.py
	$(BIN)/python benchmarks/bench_gate.py
	$(BIN)/python benchmarks/bench_report_intervals.py
	$(BIN)/python benchmarks/bench_score.py
	$(BIN)/python benchmarks/bench_spark.py

clean: ## remove generated outputs and the local MLflow store (keeps .venv)
	rm -rf outputs data reports benchmarks/results/*.json
	find mlruns -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
