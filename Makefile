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

.PHONY: help install test test-fast lint docs screenshots demo data train score score-one report ui bench clean server server-stop

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its pinned dependencies and dev tools

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint docs ## ruff + the docs build + the whole pytest suite (slow end-to-end tests included)
	$(BIN)/pytest

test-fast: lint ## ruff + the tests that need neither MLflow nor Spark (about 2.5 min on 2 shared cores)
	$(BIN)/pytest -m "not slow"

# NO_MKDOCS_2_WARNING: Material's banner about its successor, printed on every build. Not --quiet:
# it hides the warnings from --strict, which then passes a broken link (measured)
docs: $(STAMP) ## the documentation site: mkdocs build --strict into site/ (a broken link or a missing page fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site


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

# the champion if one was promoted; else the exploratory (below Riley's minimum sample size)
# or the latest candidate version: `score` itself warns about a model that is not the champion
score-one:
	@alias=$$($(BIN)/python -c 'import sys; from msc_response.registry.registration import scoring_alias; print(scoring_alias(sys.argv[1]))' $(NAME)) || exit $$?; \
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

SHOT_EXPERIMENT := child-pugh-day28
SHOT_EXPLAIN := outputs/explain_SIM-0000001.html

screenshots: $(STAMP) ## screenshots of the training report, validation and explain pages (SIMULATED data): docs/images/*.png
	@test -d data/screening || $(MAKE) --no-print-directory data
	@ls reports/$(SHOT_EXPERIMENT)/*/index.html 2>/dev/null | grep -qv /validation- || $(MAKE) --no-print-directory train
	@alias=$$($(BIN)/python -c 'import sys; from msc_response.registry.registration import scoring_alias; print(scoring_alias(sys.argv[1]))' $(SHOT_EXPERIMENT)) || exit $$?; \
	ls reports/$(SHOT_EXPERIMENT)/validation/*/index.html >/dev/null 2>&1 || \
	  $(CLI) validate --model models:/$(SHOT_EXPERIMENT)@$$alias --data data/screening || exit $$?; \
	$(CLI) explain --model models:/$(SHOT_EXPERIMENT)@$$alias --data data/trial --patient SIM-0000001 --out $(SHOT_EXPLAIN)
	$(BIN)/python docs/screenshots.py $(SHOT_EXPERIMENT) $(SHOT_EXPLAIN)

ui: $(STAMP) ## the MLflow UI on http://127.0.0.1:5000 over the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

# A team's tracking server: PostgreSQL (Debian's packages, installed where missing) behind
# `mlflow server --serve-artifacts`; everything under SERVER_DATA; see docs/deployment.md
SERVER_DATA ?= .server
SERVER_PORT ?= 5005
PG_PORT ?= 5433
server: $(STAMP) ## MLflow tracking server on PostgreSQL: SERVER_PORT=5005 PG_PORT=5433 SERVER_DATA=.server [AUTH=1]
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  echo "installing PostgreSQL (apt-get install postgresql)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	$(BIN)/python -m msc_response.server start --data $(SERVER_DATA) --port $(SERVER_PORT) --pg-port $(PG_PORT) $(if $(AUTH),--auth)

server-stop: $(STAMP) ## stop exactly what `make server` started (by its PID files in SERVER_DATA)
	$(BIN)/python -m msc_response.server stop --data $(SERVER_DATA)

bench: $(STAMP) ## benchmarks; results in benchmarks/results/*.json (about two hours on 2 cores)
	$(BIN)/python -m benchmarks.bench_scores
	$(BIN)/python -m benchmarks.bench_features
	$(BIN)/python -m benchmarks.bench_simulate
	$(BIN)/python -m benchmarks.bench_train
	$(BIN)/python -m benchmarks.bench_honest_validation
	$(BIN)/python -m benchmarks.bench_gate
	$(BIN)/python -m benchmarks.bench_report_intervals
	$(BIN)/python -m benchmarks.bench_score
	$(BIN)/python -m benchmarks.bench_spark
	$(BIN)/python -m benchmarks.bench_server
	$(BIN)/python -m benchmarks.bench_benefit

clean: ## remove generated outputs, the built site and the local MLflow store (keeps .venv)
	rm -rf outputs data reports site benchmarks/results/*.json
	find mlruns -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
