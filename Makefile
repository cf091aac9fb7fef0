# The two commands: `make run` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
# Python packages come from uv.lock (exact versions and PyPI hashes, runtime and dev); uv itself
# is bootstrapped with pip at the version the lock holds (a test keeps the two equal).
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

.PHONY: install run test lint typecheck pytest bench lock requirements upgrade clean

install: $(PIP_STAMP) $(NPM_STAMP)

# `sync` refuses to install when uv.lock no longer matches pyproject.toml (then run `make lock`),
# and removes whatever the lock does not hold.
$(PIP_STAMP): pyproject.toml uv.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) && [ "$$($(UV) --version | cut -d' ' -f2)" = "$(UV_VERSION)" ] || \
		$(PY) -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'
	$(PY) -m localdev.requirements sync
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

# One worker per core, each test file whole on one worker (a file's stack is started once),
# files handed out in collection order (tests/conftest.py puts the slow ones first).
PYTEST_PARALLEL ?= -n auto --dist loadfile --no-loadscope-reorder
pytest: install
	$(VENV)/bin/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

## make bench: latency and throughput figures (not tests)
bench: install
	$(PY) -m bench

## make lock / make requirements: re-lock after editing pyproject.toml and re-export requirements.txt
lock requirements: $(PIP_STAMP)
	$(PY) -m localdev.requirements

## make upgrade: move every locked package to the newest version pyproject.toml allows
upgrade: $(PIP_STAMP)
	$(PY) -m localdev.requirements --upgrade

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache .mypy_cache .ruff_cache
