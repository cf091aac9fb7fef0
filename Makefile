# The two commands: `make run` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: install run test lint typecheck pytest bench requirements clean

install: $(PIP_STAMP) $(NPM_STAMP)

$(PIP_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## make run: Azurite, the Partner Center simulator and the functions host on :7071, with demo data
run: install
	$(PY) -m localdev.run $(RUN_ARGS)

## make test: lint, types and the whole test suite (Azurite and the simulator on free ports)
test: install lint typecheck pytest

lint: $(PIP_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(PIP_STAMP)
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## make bench: latency and throughput figures (not tests)
bench: install
	$(PY) -m bench

requirements: $(PIP_STAMP)
	$(PY) -m localdev.requirements

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache .mypy_cache .ruff_cache
