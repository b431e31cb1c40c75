"""Fixtures for integration tests against a REAL Kafka broker and the real kernel.

``kafka_bootstrap`` (session): ``$OOMSTREAM_KAFKA_BOOTSTRAP`` if set; otherwise the single local
broker of deploy/local-kafka/kafka.sh (127.0.0.1:9092), started for the session if it is not running
and stopped at the end only if this session started it. Tests are skipped only when java/mvn are
missing; any other failure to start a broker is an error, not a skip.

``kernel_allows_oom`` (session): skips, with the reason, where the machine cannot cause a real OOM
kill (not root, no cgroup v1 memory controller, no readable /dev/kmsg).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from oomlab import can_cause_oom

from tests.integration.kafka_broker import BOOTSTRAP_ENV, LocalCluster, missing_prerequisite


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    reason = missing_prerequisite()
    if reason is not None:
        pytest.skip(f"no Kafka broker: {reason}; set {BOOTSTRAP_ENV} to use an existing one")
    cluster = LocalCluster("single")
    bootstrap = cluster.start()
    try:
        yield bootstrap
    finally:
        if cluster.started_here:
            cluster.stop()


@pytest.fixture(scope="session")
def local_cluster_prerequisites() -> None:
    """For tests that start their own dedicated cluster (kill/restart), whatever the session broker."""
    reason = missing_prerequisite()
    if reason is not None:
        pytest.skip(f"cannot start a local Kafka cluster: {reason}")


@pytest.fixture(scope="session")
def kernel_allows_oom() -> None:
    ok, why = can_cause_oom()
    if not ok:
        pytest.skip(f"cannot cause a real OOM kill here: {why}")
