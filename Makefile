# VRM Vault. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
CHROMIUM ?= /usr/bin/chromium
WRK ?= /usr/bin/wrk
PGBENCH ?= /usr/bin/pgbench

.PHONY: help run test lint format venv clean bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP) $@

venv: $(STAMP)

run: $(STAMP) ## Set up, migrate and start the service on http://$(HOST):$(PORT), webhooks and scheduled jobs included
	$(BIN)/vrm db upgrade
	VRM_BASE_URL="$${VRM_BASE_URL:-http://$(HOST):$(PORT)}" $(BIN)/vrm serve --host $(HOST) --port $(PORT) --with-worker

$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser tests..."
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium

test: $(TEST_STAMP) $(CHROMIUM) ## Set up and run the whole suite on SQLite and PostgreSQL, with coverage
	$(BIN)/python -m pytest -n 2 --cov --cov-report=term $(PYTEST_ARGS)

$(WRK):
	@echo "Installing Debian's wrk for the HTTP benchmark..."
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q wrk

$(PGBENCH):
	@echo "Installing Debian's pgbench (postgresql-client) for the ledger benchmark..."
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q postgresql-client

bench: $(STAMP) $(WRK) $(PGBENCH) ## wrk against the vault and a bare endpoint, on PostgreSQL (BENCH_ARGS=...); installs pgbench for bench/ledger.py
	$(BIN)/python bench/http.py --wrk $(WRK) $(BENCH_ARGS)

lint: $(TEST_STAMP) ## ruff format check, ruff lint, mypy, the import contracts (layers, no cycles)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy vrm vault consent intents vendor_api web
	$(BIN)/lint-imports

format: $(TEST_STAMP) ## Apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the virtual environment and caches (keeps ./var)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
