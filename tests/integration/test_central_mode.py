"""Central mode against the real broker: shipped lines in an input topic become events exactly
once (read_committed), across a SIGKILL mid-transaction and a second member joining the group."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from shippers.envelopes import BUILDERS, dmesg_lines

from streamer.inputs import events_from_bytes
from tests.integration.kafka_broker import oom_report, unique_topic
from tests.integration.service import kafka_settings, start_oomstream

pytestmark = [pytest.mark.kafka]
SAMPLES = Path(__file__).resolve().parents[2] / "streamer" / "samples"


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed_events(bootstrap: str, topic: str, want: int, timeout: float) -> list[dict[str, object]]:
    """Events visible to a read_committed consumer: wait for ``want``, then 3 s more for repeats."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"verify-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                out += [orjson.loads(r.value) for r in records]
            if len(out) >= want and settle_until is None:
                settle_until = time.monotonic() + 3.0
            if settle_until is not None and time.monotonic() > settle_until:
                break
    finally:
        await consumer.stop()
    return out


def member(
    tmp: Path, bootstrap: str, events: str, inputs: str, group: str, name: str, directory: str | None = None
) -> subprocess.Popen[str]:
    """A member with transactional id ``<group>-<name>``, its state in ``directory`` (default: ``name``;
    two processes at once need two: the state directory is locked)."""
    (tmp / (directory or name)).mkdir(exist_ok=True)
    return start_oomstream(
        tmp / (directory or name),
        **kafka_settings(bootstrap, events),
        OOMSTREAM_SOURCES_ENABLED="kafka_lines",
        OOMSTREAM_SOURCES_KAFKA_LINES_TOPICS=inputs,
        OOMSTREAM_SOURCES_KAFKA_LINES_GROUP_ID=group,
        OOMSTREAM_SOURCES_KAFKA_LINES_TRANSACTIONAL_ID=f"{group}-{name}",
        OOMSTREAM_SOURCES_KAFKA_LINES_COMMIT_INTERVAL_SECONDS="0.2",
        OOMSTREAM_KUBERNETES_MODE="off",
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err


def storm(host_index: int, reports: int) -> bytes:
    """Synthetic reports with kernel times and pids of their own per host (distinct event ids)."""
    first = host_index * 100_000
    return "".join(oom_report(i, pod=i % 50) for i in range(first, first + reports)).encode()


def test_shipped_lines_of_two_hosts_become_the_events_parse_gives(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    inputs, events, group = unique_topic("lines"), unique_topic("central"), f"g-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, inputs, 2))
    files = {"node-a": SAMPLES / "6.18-pod-limit.dmesg", "node-b": SAMPLES / "6.6-oom-group-kill.dmesg"}
    shapes = {"node-a": "rsyslog-json", "node-b": "vector-file"}
    records = [
        (host, orjson.dumps(BUILDERS[shapes[host]](line, seq, host)))
        for host, path in files.items()
        for seq, line in enumerate(dmesg_lines(path.read_text()))
    ]
    asyncio.run(produce(kafka_bootstrap, inputs, records))
    expected = {
        e.event_id: host for host, path in files.items() for e in events_from_bytes(path.read_bytes())
    }
    proc = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1")
    try:
        got = asyncio.run(committed_events(kafka_bootstrap, events, len(expected), timeout=90))
    finally:
        err = stop(proc)
    assert Counter(e["event_id"] for e in got) == Counter(expected.keys()), err[-3000:]
    assert {e["event_id"]: e["host"] for e in got} == expected
    assert all(e["partial"] is False for e in got)


def test_sigkill_mid_transaction_publishes_every_kill_exactly_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    inputs, events, group = unique_topic("lines"), unique_topic("central"), f"g-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, inputs, 3))
    hosts = {f"storm-{i}": storm(i, 120) for i in range(3)}
    expected = {e.event_id for log in hosts.values() for e in events_from_bytes(log)}
    chunks: list[list[tuple[str, bytes]]] = [[] for _ in range(8)]
    for host, log in hosts.items():
        lines = log.splitlines()
        step = len(lines) // 8 + 1
        for index in range(8):
            chunks[index] += [(host, line) for line in lines[index * step : (index + 1) * step]]
    proc = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1")
    try:
        time.sleep(4.0)  # joined the group
        for chunk in chunks[:5]:
            asyncio.run(produce(kafka_bootstrap, inputs, chunk))
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)  # commits run every 0.2 s: this lands in or between them
        stop(proc)
        for chunk in chunks[5:]:
            asyncio.run(produce(kafka_bootstrap, inputs, chunk))
        proc = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1")  # same transactional id
        got = asyncio.run(committed_events(kafka_bootstrap, events, len(expected), timeout=120))
    finally:
        err = stop(proc)
    counts = Counter(e["event_id"] for e in got)
    assert set(counts) == expected, f"missing {len(expected - set(counts))}: {err[-3000:]}"
    twice = [(e["event_id"], e["source"]) for e in got if counts[e["event_id"]] > 1]  # type: ignore[index]
    assert not twice, f"published twice: {twice[:4]}; member log: {err[-1500:]}"


def test_a_second_member_joins_and_every_kill_is_published_once(tmp_path: Path, kafka_bootstrap: str) -> None:
    inputs, events, group = unique_topic("lines"), unique_topic("central"), f"g-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, inputs, 4))
    hosts = {f"node-{i}": storm(10 + i, 40) for i in range(8)}
    expected = {e.event_id for log in hosts.values() for e in events_from_bytes(log)}
    records = [(host, line) for host, log in hosts.items() for line in log.splitlines()]
    half = len(records) // 2
    first = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1")
    second = None
    try:
        time.sleep(4.0)
        asyncio.run(produce(kafka_bootstrap, inputs, records[:half]))
        second = member(tmp_path, kafka_bootstrap, events, inputs, group, "m2")
        time.sleep(6.0)  # the group rebalances while the first member is working
        asyncio.run(produce(kafka_bootstrap, inputs, records[half:]))
        got = asyncio.run(committed_events(kafka_bootstrap, events, len(expected), timeout=120))
    finally:
        err_first = stop(first)
        err_second = stop(second) if second is not None else ""
    counts = Counter(e["event_id"] for e in got)
    assert set(counts) == expected, err_first[-2000:] + err_second[-2000:]
    assert max(counts.values()) == 1
    assert "partitions assigned: it." in err_second, err_second[-2000:]
    assert "partitions revoked" in err_first


def test_a_second_process_with_the_same_transactional_id_fences_the_first(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    inputs, events, group = unique_topic("lines"), unique_topic("central"), f"g-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, inputs, 2))
    # Several hosts, so both partitions carry lines and the first member has work to commit.
    logs = {f"node-x{h}": storm(30 + h, 6).splitlines() for h in range(8)}
    early = [(host, line) for host, log in logs.items() for line in log[: len(log) // 2]]
    late = [(host, line) for host, log in logs.items() for line in log[len(log) // 2 :]]
    first = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1")
    second = None
    try:
        time.sleep(4.0)
        asyncio.run(produce(kafka_bootstrap, inputs, early))
        time.sleep(2.0)
        second = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1", "m1-again")  # the same id
        time.sleep(6.0)
        asyncio.run(produce(kafka_bootstrap, inputs, late))
        with contextlib.suppress(subprocess.TimeoutExpired):  # still running: the assert shows its log
            first.wait(timeout=90)
    finally:
        err_first = stop(first)
        if second is not None:
            stop(second)
    assert first.returncode == 2, err_first[-2000:]
    assert "sources.kafka_lines.transactional_id" in err_first
