# Punching Fist. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
T ?= tests

.PHONY: help install test lint format run bench bench-ingest bench-engine bench-notifier bench-agent bench-storm eval migrate clean crds validate
.PHONY: settings-doc flower e2e dev dev-stop dev-status

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## create .venv and install the project with its test and dev tools

test: $(STAMP) ## run every test (make test T=tests/unit to pick)
	$(BIN)/python -m pytest $(T)

e2e: $(STAMP) ## only the end-to-end suite (tests/e2e: every deployable as a process, real AlertManager)
	$(BIN)/python -m pytest tests/e2e -m e2e

lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Text logs: a person reads them in the terminal, between the reports. Every deployed
# process keeps the default, JSON lines (PF_LOG_FORMAT=json overrides here too).
run: $(STAMP) ## the whole pipeline on the embedded default (SQLite), on $PF_INGEST_BIND (127.0.0.1:8080)
	PF_SECRETS_DIR=$${PF_SECRETS_DIR:-examples/secrets} \
	PF_API_TOKEN_FILE=$${PF_API_TOKEN_FILE:-examples/secrets/punchingfist-api/token} \
	PF_LOG_FORMAT=$${PF_LOG_FORMAT:-text} \
	$(BIN)/punchingfist run --config-dir examples

dev: $(STAMP) ## every deployable, the stand-ins and Flower (:5555) as local processes on the machine's Redis and PostgreSQL; logs and pids in var/dev
	@$(BIN)/python -c 'import flower' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[flower]'
	$(BIN)/python deploy/dev.py start

dev-stop: ## stop what make dev started (by its pid files)
	@$(BIN)/python deploy/dev.py stop

dev-status: ## which of make dev's processes are running
	@$(BIN)/python deploy/dev.py status

crds: $(STAMP) ## regenerate the CRD manifests in k8s/crds/ from shared/resources
	$(BIN)/python -m shared.resources.crds k8s/crds

settings-doc: $(STAMP) ## regenerate the PF_ settings table of docs/deploy.md from shared/settings.py
	$(BIN)/python -m shared.settings_doc --write docs/deploy.md

flower: $(STAMP) ## the Celery dashboard on http://127.0.0.1:5555 for $PF_BROKER_URL (Redis; default redis://127.0.0.1:6379/0)
	@$(BIN)/python -c 'import flower' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[flower]'
	$(BIN)/celery --broker=$${PF_BROKER_URL:-redis://127.0.0.1:6379/0} flower --address=127.0.0.1 --port=5555 \
	  --tasks_columns=name,uuid,state,args,received,started,runtime,worker

validate: $(STAMP) ## check resource files offline, one set at a time (make validate F=examples)
	@for set in $(or $(F),examples examples/cluster); do \
	  $(BIN)/python -m services.controller.cli validate -f $$set || exit 1; done

eval: $(STAMP) ## agent evals: recorded scenarios, rules (and PF_EVAL_LLM's model), with the score
	$(BIN)/python -m pytest tests/evals -q

bench-agent: $(STAMP) ## agent: each tool's latency against the API double, loop overhead per iteration
	$(BIN)/python bench/agent.py

migrate: $(STAMP) ## bring PF_DATABASE_URL to the newest schema
	$(BIN)/punchingfist migrate

bench-ingest: $(STAMP) ## ingest throughput and latency vs a bare Flask endpoint (SQLite, PostgreSQL)
	$(BIN)/python bench/ingest.py

bench-engine: $(STAMP) ## engine latency (alert -> first step at 100/s, 5 steps vs bare Celery chain) on Redis
	$(BIN)/python bench/engine.py

bench-notifier: $(STAMP) ## notifier deliveries/s and run-end -> Slack latency vs bare slack-sdk calls (local Slack stand-in, Redis)
	$(BIN)/python bench/notifier.py

bench-storm: $(STAMP) ## alert storm: 10,000 AlertManager notifications over 100 fingerprints -> exactly 100 runs (PostgreSQL, SQLite)
	$(BIN)/python bench/storm.py

bench: $(STAMP) ## every benchmark and the storm, then the one table in docs/performance.md (ONLY=ingest,storm for a subset)
	$(BIN)/python bench/suite.py $(if $(ONLY),--only $(ONLY))

clean: ## remove the venv and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
