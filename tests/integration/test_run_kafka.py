"""`oomstream run` against the real broker: a real OOM kill becomes a Kafka record; after a
SIGKILL the service resends at most its unacknowledged tail, with the same event ids."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from eventschema import validate_any
from oomlab import cgroupfs_parts, container_id, memcg, pod_uid, run_oom

from tests.integration.kafka_broker import consume_all, unique_topic
from tests.integration.service import kafka_settings, start_oomstream

pytestmark = [pytest.mark.kernel, pytest.mark.kafka, pytest.mark.usefixtures("kernel_allows_oom")]


def start(tmp: Path, bootstrap: str, topic: str, **env: str) -> subprocess.Popen[str]:
    return start_oomstream(tmp, **kafka_settings(bootstrap, topic), **env)


def records_for(bootstrap: str, topic: str) -> list[dict[str, object]]:
    """The topic's events, each checked against its schema (the service runs in another process)."""
    records = asyncio.run(consume_all(bootstrap, topic, timeout_seconds=30))
    return [validate_any(json.loads(r.value)) for r in records]


def test_live_kill_reaches_kafka_and_sigkill_restart_repeats_only_same_ids(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = unique_topic("run")
    proc = start(tmp_path, kafka_bootstrap, topic)
    try:
        time.sleep(3.0)
        uid, cid = pod_uid(), container_id()
        with memcg(cgroupfs_parts("guaranteed", uid, cid), 64 << 20) as cgroup:
            killed = run_oom(cgroup, comm="kafka-victim")
        assert killed
        deadline = time.monotonic() + 40
        mine: list[dict[str, object]] = []
        while time.monotonic() < deadline and not mine:
            time.sleep(1.0)
            try:
                mine = [
                    e
                    for e in records_for(kafka_bootstrap, topic)
                    if e["victim"] and e["victim"]["pid"] in killed
                ]  # type: ignore[index]
            except TimeoutError:
                continue
        assert mine, "the kill did not reach Kafka"
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no final checkpoint
        proc.communicate(timeout=30)
    event = mine[0]
    assert event["cgroup"]["pod_uid"] == uid and event["cgroup"]["qos_class"] == "Guaranteed"  # type: ignore[index]
    first_ids = {e["event_id"] for e in mine}

    # Restart from the checkpoint: whatever is resent carries the same ids.
    proc = start(tmp_path, kafka_bootstrap, topic)
    time.sleep(6.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    again = [e for e in records_for(kafka_bootstrap, topic) if e["victim"] and e["victim"]["pid"] in killed]  # type: ignore[index]
    assert {e["event_id"] for e in again} == first_ids


@pytest.mark.slow
def test_kafka_outage_spools_the_kill_and_drains_it_when_kafka_returns(
    tmp_path: Path, local_cluster_prerequisites: None
) -> None:
    from tests.integration.kafka_broker import LocalCluster

    cluster = LocalCluster("oomstream-it-outage", port=29792)
    bootstrap = cluster.start()
    topic = unique_topic("outage")
    proc: subprocess.Popen[str] | None = None
    try:
        proc = start(
            tmp_path,
            bootstrap,
            topic,
            OOMSTREAM_SINKS_KAFKA_DELIVERY_TIMEOUT_SECONDS="4",
            OOMSTREAM_SINKS_KAFKA_REQUEST_TIMEOUT_SECONDS="2",
        )
        time.sleep(4.0)  # connected, topic created, ring backlog published
        cluster.stop()
        uid, cid = pod_uid(), container_id()
        with memcg(cgroupfs_parts("besteffort", uid, cid), 64 << 20) as cgroup:
            killed = run_oom(cgroup, comm="outage-victim")
        assert killed
        spool_dir = tmp_path / "spool"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(b"outage-victim" in path.read_bytes() for path in spool_dir.glob("*") if path.is_file()):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the kill was not spooled while Kafka was down")
        cluster.start_node(1)
        deadline = time.monotonic() + 90
        mine: list[dict[str, object]] = []
        while time.monotonic() < deadline and not mine:
            time.sleep(2.0)
            try:
                mine = [
                    e for e in records_for(bootstrap, topic) if e["victim"] and e["victim"]["pid"] in killed
                ]  # type: ignore[index]
            except TimeoutError:
                continue
        assert mine, "the spooled kill did not reach Kafka after it came back"
        assert mine[0]["cgroup"]["pod_uid"] == uid  # type: ignore[index]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        cluster.stop()
        cluster.clean()
