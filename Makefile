# oomstream: everything a fresh machine needs is installed by these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SAMPLES := $(wildcard streamer/samples/*)
PYTEST_ARGS ?=

.PHONY: install lint test run bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (need Python >= 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check parsers streamer tests
	$(BIN)/mypy --strict parsers streamer

test: install lint
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

run: install
	$(BIN)/oomstream parse $(SAMPLES)

bench: install
	$(BIN)/python tests/bench/bench_parse.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
