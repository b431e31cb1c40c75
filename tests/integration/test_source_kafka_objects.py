"""KafkaObjectsSource against a REAL broker: consume, acknowledge some, restart the group, resume
at the first record whose signals were not all acknowledged."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from k8sfake.objects import make_event

from parsers.events import EVENT_TYPE_K8S_OOM_KILLING, K8sEvent
from streamer.sources.kafka_objects import KafkaObjectsSource, KafkaSourceError
from tests.integration.kafka_broker import unique_topic

KILL = (
    "Memory cgroup out of memory: Killed process {pid} (worker) total-vm:1048576kB, anon-rss:524288kB, "
    "file-rss:1024kB, shmem-rss:0kB, UID:1000 pgtables:1100kB oom_score_adj:985"
)


def oom_killing(pid: int) -> dict[str, Any]:
    return make_event(reason="OOMKilling", message=KILL.format(pid=pid))


def object_line(pid: int) -> bytes:
    """Vary the shapes a topic carries: bare objects, watch events, exporter envelopes."""
    event = oom_killing(pid)
    doc = [event, {"type": "ADDED", "object": event}, {"event": event}][pid % 3]
    return orjson.dumps(doc)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[tuple[int, bytes]]) -> None:
    """(partition, value) records, in order."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition, value in values:
            await producer.send(topic, value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def take(signals: AsyncIterator[K8sEvent], n: int, timeout: float = 20) -> list[K8sEvent]:
    out: list[K8sEvent] = []

    async def collect() -> None:
        async for event in signals:
            out.append(event)
            if len(out) == n:
                return

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise AssertionError(f"got {len(out)} of {n} signals within {timeout} s") from None
    return out


def source_for(bootstrap: str, topic: str, group: str) -> KafkaObjectsSource:
    return KafkaObjectsSource(
        bootstrap_servers=bootstrap.split(","),
        topic=topic,
        group_id=group,
        node="node-a",
        connect_timeout_seconds=20,
        commit_interval_seconds=0.2,
    )


@pytest.mark.kafka
async def test_restart_resumes_at_the_first_unacknowledged_record(kafka_bootstrap: str) -> None:
    topic = unique_topic("k8s-objects")
    group = f"it-k8s-objects-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic, 1)
    garbage_at = {7: b"not json at all", 23: b"\xff\xfe\x00", 41: b"[1, 2, 3]"}  # record offsets
    values: list[tuple[int, bytes]] = []
    pid = 0
    for offset in range(53):
        if offset in garbage_at:
            values.append((0, garbage_at[offset]))
        else:
            pid += 1
            values.append((0, object_line(pid)))
    await produce(kafka_bootstrap, topic, values)
    offset_of_pid = {}
    pid = 0
    for offset in range(53):
        if offset not in garbage_at:
            pid += 1
            offset_of_pid[pid] = offset

    first = source_for(kafka_bootstrap, topic, group)
    async with first:
        signals = await take(first.signals(), 50)
        assert [s.pid for s in signals] == list(range(1, 51))
        assert {s.type for s in signals} == {EVENT_TYPE_K8S_OOM_KILLING}
        assert [s.source.position for s in signals] == [
            {"topic": topic, "partition": 0, "offset": offset_of_pid[p]} for p in range(1, 51)
        ]
        assert signals[0].source.kind == "k8s_kafka"
        for event in reversed(signals[:20]):  # the order acknowledgements arrive in does not matter
            first.acknowledged(event)
        first.acknowledged(signals[0])  # a repeat is ignored
    assert first.counts["bad_lines"] == 3
    assert first.counts["bad_json"] == 1 and first.counts["bad_utf8"] == 1 and first.counts["not_object"] == 1
    assert first.counts["acks"] == 20
    assert first.counts["acks_unknown"] == 1
    assert first.counts["records"] == 53

    second = source_for(kafka_bootstrap, topic, group)
    async with second:
        again = await take(second.signals(), 30)
    assert [s.pid for s in again] == list(range(21, 51))  # none of 1..20, all of 21..50
    assert again[0].source.position == {"topic": topic, "partition": 0, "offset": offset_of_pid[21]}
    assert second.counts["records"] >= 53 - offset_of_pid[21]
    assert second.counts["bad_lines"] == 2  # the garbage after signal 21 (offsets 23 and 41)
    assert {s.event_id for s in again} == {s.event_id for s in signals[20:]}


@pytest.mark.kafka
async def test_each_partition_commits_below_its_lowest_unsettled_record(kafka_bootstrap: str) -> None:
    topic = unique_topic("k8s-objects-parts")
    group = f"it-k8s-objects-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic, 2)
    both = {"apiVersion": "v1", "kind": "EventList", "items": [oom_killing(103), oom_killing(203)]}
    values: list[tuple[int, bytes]] = []
    for offset in range(8):
        if offset == 0:
            values.append((0, b""))  # an empty record settles at once
        else:
            values.append((0, orjson.dumps(both) if offset == 3 else object_line(100 + offset)))
        values.append((1, object_line(1000 + offset)))
    await produce(kafka_bootstrap, topic, values)

    first = source_for(kafka_bootstrap, topic, group)
    async with first:
        signals = await take(first.signals(), 16)
        by_pid = {s.pid: s for s in signals}
        assert by_pid[103].source.position == by_pid[203].source.position
        # Everything acknowledged except one of the two signals of partition 0's record 3.
        for event in signals:
            if event.pid != 203:
                first.acknowledged(event)
        await asyncio.sleep(0.5)  # the periodic commit runs meanwhile; aclose commits again anyway
    assert first.counts["commits"] >= 1
    assert first.counts["blank_lines"] == 1

    second = source_for(kafka_bootstrap, topic, group)
    async with second:
        again = await take(second.signals(), 6)
        # Partition 0 resumes at record 3 (both of its signals again, then 4..7); partition 1 is done.
        assert sorted(s.pid for s in again) == [103, 104, 105, 106, 107, 203]
        assert {s.source.position["partition"] for s in again} == {0}  # type: ignore[index]
        for event in again:
            second.acknowledged(event)
    assert second.counts["blank_lines"] == 0  # settled and committed by the first source

    third = source_for(kafka_bootstrap, topic, group)
    async with third:
        stream = third.signals()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 3)  # everything is settled: nothing to read again
        await third.aclose()


async def test_unreachable_broker_is_a_clear_retriable_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = KafkaObjectsSource(
        bootstrap_servers=[f"127.0.0.1:{port}"],
        topic="k8s.objects",
        group_id="g",
        connect_timeout_seconds=1.5,
    )
    with pytest.raises(KafkaSourceError) as caught:
        async with source:
            pass
    assert caught.value.retriable
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "connect_timeout_seconds" in str(caught.value)
    assert source.counts["connect_retries"] >= 1
