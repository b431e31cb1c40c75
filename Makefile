# oomstream: everything a fresh machine needs is installed by these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SAMPLES := $(wildcard streamer/samples/*)
PYTEST_ARGS ?=
KAFKA := deploy/local-kafka/kafka.sh

.PHONY: install lint test run samples bench clean

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

# The Kafka tests start the local broker themselves (tests/integration/conftest.py) unless
# OOMSTREAM_KAFKA_BOOTSTRAP names one; fetching the jars first makes a download problem obvious.
test: install lint
	$(KAFKA) fetch
	bash deploy/shippers/install.sh
	bash tests/install-browser.sh
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

RUN_STATE ?= $(CURDIR)/.state

# The node service on this machine's kernel log. Without OOMSTREAM_KAFKA_BOOTSTRAP it starts the
# local broker (deploy/local-kafka) and stops it again when the service exits (Ctrl-C).
run: install
	@mkdir -p $(RUN_STATE)
	@if [ -n "$$OOMSTREAM_KAFKA_BOOTSTRAP" ]; then \
		exec env OOMSTREAM_STATE_DIRECTORY=$(RUN_STATE)/state OOMSTREAM_SPOOL_DIRECTORY=$(RUN_STATE)/spool \
			$(BIN)/oomstream run --log-format text $(RUN_ARGS); \
	fi; \
	bootstrap=$$($(KAFKA) start | tail -n1) || exit 1; \
	echo "$$bootstrap" > $(RUN_STATE)/kafka-bootstrap; \
	trap 'rm -f $(RUN_STATE)/kafka-bootstrap; $(KAFKA) stop >/dev/null 2>&1' EXIT; \
	echo "oomstream: publishing to the local broker at $$bootstrap (topic oomstream.events.v1); Ctrl-C stops"; \
	OOMSTREAM_KAFKA_BOOTSTRAP=$$bootstrap OOMSTREAM_STATE_DIRECTORY=$(RUN_STATE)/state \
		OOMSTREAM_SPOOL_DIRECTORY=$(RUN_STATE)/spool $(BIN)/oomstream run --log-format text $(RUN_ARGS)

# Offline: parse the bundled sample logs and print the events.
samples: install
	$(BIN)/oomstream parse $(SAMPLES)

# Speed figures (see README): parsing, the pid index, Kafka delivery against the local broker, and
# the timeline over 100,000 events from Kafka (seconds, peak memory, HTML report size).
bench: install
	$(BIN)/python tests/bench/bench_parse.py
	$(BIN)/python tests/bench/bench_pid_index.py
	$(BIN)/python tests/bench/bench_pod_cache.py
	$(BIN)/python tests/bench/bench_startup.py
	$(BIN)/python tests/bench/bench_kafka.py
	$(BIN)/python tests/bench/bench_shippers.py
	$(BIN)/python tests/bench/bench_timeline.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
