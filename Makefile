# oomstream: everything a fresh machine needs is installed by these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SAMPLES := $(wildcard streamer/samples/*)
PYTEST_ARGS ?=
KAFKA := deploy/local-kafka/kafka.sh

.PHONY: install lint test run samples bench clean tools helm crd-schemas image image-test manifests chart-test rules-test

# Tools the deployment checks use, cached in git-ignored .tools/ (a second run is fast).
TOOLS := $(CURDIR)/.tools
HELM := $(TOOLS)/bin/helm
HELM_VERSION := v4.3.2
PROMETHEUS_OPERATOR_VERSION := v0.85.0
GO_ENV := GOPATH=$(TOOLS)/go GOMODCACHE=$(TOOLS)/go/pkg/mod GOCACHE=$(TOOLS)/go-cache GOFLAGS=-modcacherw
APT_TOOLS := podman buildah mmdebstrap runc prometheus

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (need Python >= 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check parsers streamer tests deploy/grafana docs
	$(BIN)/mypy --strict parsers streamer

# The Kafka tests start the local broker themselves (tests/integration/conftest.py) unless
# OOMSTREAM_KAFKA_BOOTSTRAP names one; fetching the jars first makes a download problem obvious.
# The image, chart, rule and dashboard tests need tools/helm/crd-schemas; where one cannot be
# installed, the reason is printed and those tests skip with it while the rest of the suite runs.
test: install lint tools helm crd-schemas
	$(KAFKA) fetch
	bash deploy/shippers/install.sh
	bash tests/install-browser.sh
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

# apt packages: podman/buildah/runc/mmdebstrap (image), prometheus (server and promtool).
tools:
	@mkdir -p $(TOOLS); missing=$$(for p in $(APT_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $$missing \
			|| { apt-get -o DPkg::Lock::Timeout=600 update -q && DEBIAN_FRONTEND=noninteractive \
				apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $$missing; }; } \
			>$(TOOLS)/apt.log 2>&1 \
		|| echo "warning: could not install $$missing (see $(TOOLS)/apt.log); the image and Prometheus tests will skip"; \
	fi

# Helm v4 from the Go module proxy (about 4 minutes once; cached in .tools/bin).
helm: $(HELM)
$(HELM):
	@mkdir -p $(TOOLS)/bin
	@command -v go >/dev/null || { echo "warning: no go toolchain: helm not built, the chart tests will skip"; exit 0; }; \
	echo "building helm $(HELM_VERSION) with go install (once; cached in $(TOOLS)/bin; the 1.2 GB build cache is dropped after)"; \
	if $(GO_ENV) GOBIN=$(TOOLS)/bin go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); then \
		rm -rf $(TOOLS)/go-cache; \
	else echo "warning: go install helm failed: the chart tests will skip"; fi

# The Prometheus Operator's CRD schemas (ServiceMonitor, PrometheusRule), from the Go module proxy.
crd-schemas:
	@ls -d $(TOOLS)/go/pkg/mod/github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) >/dev/null 2>&1 \
		|| $(GO_ENV) go mod download github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) \
		|| echo "warning: could not download the Prometheus Operator CRDs: their schema test will skip"

# The container image from ./Containerfile (podman; base made with mmdebstrap), and its test.
image: tools
	deploy/image/build.sh

image-test: install tools
	$(BIN)/python -m pytest -q -rs tests/integration/test_image.py

# deploy/kubernetes/oomstream.yaml and oomstream-k8s-events.yaml, rendered from the Helm chart.
manifests: helm
	HELM=$(HELM) deploy/kubernetes/render.sh > deploy/kubernetes/oomstream.yaml
	HELM=$(HELM) deploy/kubernetes/render.sh k8s-events > deploy/kubernetes/oomstream-k8s-events.yaml

chart-test: install helm crd-schemas
	$(BIN)/python -m pytest -q -rs tests/unit/test_helm_chart.py

rules-test: install tools
	$(BIN)/python -m pytest -q -rs tests/unit/test_prometheus_rules.py tests/integration/test_prometheus_alerts.py

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
	$(BIN)/python tests/bench/bench_footprint.py
	$(BIN)/python tests/bench/bench_shippers.py
	$(BIN)/python tests/bench/bench_timeline.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
