"""Broker failures during sends, on dedicated local clusters (never the shared session broker).

* single broker SIGKILLed mid-stream and restarted: every event is acknowledged and readable,
  duplicates (if a resend raced the crash) are recognizable by event_id;
* 3-node cluster (replication 3, min.insync.replicas 2), one broker SIGKILLed during sends and left
  down: nothing lost with acks=all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client import CollectorRegistry

from parsers.events import event_to_dict
from streamer.kafka import KafkaOptions
from streamer.sinks import DeliveryTally
from streamer.sinks.kafka import KafkaSink
from tests.integration.kafka_broker import (
    LocalCluster,
    consume_all,
    duplicates,
    make_events,
    unique_topic,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _cluster(name: str, nodes: int, port: int) -> Iterator[LocalCluster]:
    cluster = LocalCluster(name, nodes=nodes, port=port)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.clean()


@pytest.fixture(scope="module")
def single_for_kill(local_cluster_prerequisites: None) -> Iterator[LocalCluster]:
    yield from _cluster("oomstream-it-kill", 1, 29292)


@pytest.fixture(scope="module")
def trio(local_cluster_prerequisites: None) -> Iterator[LocalCluster]:
    yield from _cluster("oomstream-it-trio", 3, 29492)


async def _send_with_fault(
    cluster: LocalCluster,
    config: KafkaOptions,
    count: int,
    fault_at: int,
    fault: str,
) -> tuple[DeliveryTally, list[str], dict[str, float]]:
    events = make_events(count, pods=60)
    tally = DeliveryTally(keep_results=True)
    timings: dict[str, float] = {}
    began = time.monotonic()

    async def kill_and_maybe_restart() -> None:
        await asyncio.to_thread(cluster.kill_node, 1)
        timings["killed_at"] = time.monotonic() - began
        timings["acked_when_killed"] = tally.sent
        if fault == "kill-restart":
            await asyncio.sleep(2)
            await asyncio.to_thread(cluster.start_node, 1)
            timings["restarted_at"] = time.monotonic() - began

    fault_task: asyncio.Task[None] | None = None
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for n, event in enumerate(events):
            await sink.submit(event, [n])
            if n % 250 == 0:
                await asyncio.sleep(0.02)  # a steady stream, so the fault lands mid-stream
            if n == fault_at:
                timings["acked_before_fault"] = tally.sent
                fault_task = asyncio.create_task(kill_and_maybe_restart())
        timings["submitted_at"] = time.monotonic() - began
        assert fault_task is not None
        await fault_task
        await sink.flush(120)
    timings["flushed_at"] = time.monotonic() - began
    assert tally.failed == 0, tally.failures[:3]
    assert tally.sent == count
    assert sorted(r.positions[0] for r in tally.results) == list(range(count))  # type: ignore[type-var]

    records = await consume_all(",".join(config.bootstrap_servers), config.events_topic, timeout_seconds=90)
    ids = [orjson.loads(r.value)["event_id"] for r in records]
    assert set(ids) == {e.event_id for e in events}, "events lost"
    # Duplicates are allowed after a crash, but only as byte-identical copies of one event_id.
    by_id: dict[str, bytes] = {}
    for record, event_id in zip(records, ids, strict=True):
        assert by_id.setdefault(event_id, record.value) == record.value
    wanted = {e.event_id: event_to_dict(e) for e in events}
    assert all(orjson.loads(value) == wanted[event_id] for event_id, value in by_id.items())
    timings["duplicates"] = duplicates(ids)
    return tally, ids, timings


async def test_single_broker_sigkill_and_restart_loses_nothing(single_for_kill: LocalCluster) -> None:
    config = KafkaOptions(
        (single_for_kill.bootstrap,),
        events_topic=unique_topic("kill"),
        dead_letter_topic=unique_topic("kill.dl"),
        request_timeout_seconds=15,
        retry_max_attempts=30,
        delivery_timeout_seconds=180,
    )
    _, ids, timings = await _send_with_fault(single_for_kill, config, 20_000, 6_000, "kill-restart")
    print(f"single broker kill/restart: {len(ids)} records for 20000 events, timings {timings}")
    assert timings["acked_when_killed"] < 20_000  # events were in flight when the broker died


async def test_three_nodes_one_killed_loses_nothing_with_acks_all(trio: LocalCluster) -> None:
    config = KafkaOptions(
        tuple(trio.bootstrap.split(",")),
        events_topic=unique_topic("trio"),
        dead_letter_topic=unique_topic("trio.dl"),
        topic_partitions=6,
        request_timeout_seconds=20,
        retry_max_attempts=30,
        delivery_timeout_seconds=180,
    )
    _, ids, timings = await _send_with_fault(trio, config, 20_000, 5_000, "kill")
    print(f"3-node cluster, node 1 killed: {len(ids)} records for 20000 events, timings {timings}")
    assert timings["acked_when_killed"] < 20_000
