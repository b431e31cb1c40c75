"""Central mode bookkeeping without a broker: which offset and metadata a transaction commits,
what a re-read skips, and a host seen on two partitions."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from streamer.config import Config, ConfigError, with_overrides
from streamer.kafka import KafkaOptions
from streamer.sources.kafka_lines import CentralMode, KafkaLinesOptions, _published, host_hash

TP0, TP1 = TopicPartition("lines", 0), TopicPartition("lines", 1)


def central() -> CentralMode:
    return CentralMode(
        KafkaLinesOptions(),
        kafka=KafkaOptions(bootstrap_servers=("127.0.0.1:9",), events_topic="events"),
        transactional_id="t",
        linger_seconds=0.1,
    )


def report(pid: int, t: float) -> list[str]:
    return [
        f"[{t:.6f}] app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        f"[{t:.6f}] memory: usage 1024kB, limit 1024kB, failcnt 1",
        f"[{t:.6f}] Memory cgroup out of memory: Killed process {pid} (app) total-vm:1kB, anon-rss:1kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]


def feed(mode: CentralMode, tp: TopicPartition, offset: int, host: str, line: str) -> None:
    message = SimpleNamespace(offset=offset, key=host.encode(), value=line.encode())
    mode._consume(tp, mode._partition(tp), message)


def test_the_committed_offset_stays_before_an_open_report_and_records_what_is_published_past_it() -> None:
    mode = central()
    a, b = report(1, 10.0), report(2, 50.0)
    feed(mode, TP0, 0, "host-a", a[0])  # host a's report opens at offset 0 ...
    for offset, line in enumerate(b, start=1):  # ... host b's report is whole at 1-3
        feed(mode, TP0, offset, "host-b", line)
    assemblers = mode._partitions[TP0].assemblers
    for now in (1000.0, 1001.0, 1002.0):  # host b's report closes, then its linger passes
        mode._release(TP0, assemblers.tick(now))
    events = [event for _, event in mode._outbox]
    assert [e.victim.pid for e in events if e.victim] == [2]
    offsets = mode._commit_offsets(mode._outbox)
    offset, metadata = offsets[TP0]
    assert offset == 0  # host a's open report is read again after a crash
    assert _published(metadata) == {host_hash("host-b"): 3}  # ... but host b's report is not


def test_a_re_read_skips_the_published_records_of_that_host_only() -> None:
    mode = central()
    mode._loaded[TP0] = {host_hash("host-b"): 3}
    for offset, line in enumerate(report(2, 50.0), start=1):
        feed(mode, TP0, offset, "host-b", line)
    feed(mode, TP0, 0, "host-a", report(1, 10.0)[0])
    # The first is skipped as published; the rest too, or not even framed (no OOM keyword and no
    # open report of host b): nothing of host b's report is assembled again.
    assert mode.counts["records_already_published"] + mode.counts["records_prefiltered"] == 3
    assert mode.counts["records_already_published"] >= 1
    mode._release(TP0, mode._partitions[TP0].assemblers.flush())
    assert all(event.host == "host-a" for _, event in mode._outbox)


def test_a_host_on_two_partitions_is_counted() -> None:
    mode = central()
    feed(mode, TP0, 0, "host-a", report(1, 10.0)[0])
    feed(mode, TP1, 0, "host-a", report(1, 10.0)[1])
    assert mode.counts["host_on_two_partitions"] == 1


async def _build(tmp: Path, settings: dict[str, object]) -> list[Any]:
    from streamer import registry
    from streamer.checkpoint import CheckpointStore
    from streamer.metrics import Metrics

    config = with_overrides(Config(), {"sources.enabled": "kafka_lines", **settings})
    with CheckpointStore(str(tmp / "state")) as store:
        context = registry.BuildContext(
            config=config,
            node_name="node-c",
            checkpoints=store,
            metrics=Metrics(),
            on_delivery=lambda result: None,
            state_directory=str(tmp / "state"),
        )
        table = "sources.kafka_lines"
        built: list[Any] = await registry.component(table).build(config.components[table], context)
        return built


async def test_the_kafka_line_input_uses_the_kafka_sink_settings(tmp_path: Path) -> None:
    [source] = await _build(
        tmp_path,
        {
            "sinks.kafka.bootstrap_servers": "127.0.0.1:9",
            "sinks.kafka.events_topic": "ev",
            "sinks.kafka.key_fields": "host",
        },
    )
    central = source.central
    assert central.kafka.bootstrap_servers == ("127.0.0.1:9",)  # [sinks.kafka]'s cluster, not a copy
    assert (central.events_topic, central.key_fields) == ("ev", ("host",))
    assert central.transactional_id == "oomstream-central-node-c"
    assert source.checkpoint_key == "kafka_lines:oomstream-central"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({}, "sinks.kafka.bootstrap_servers"),
        ({"sinks.kafka.bootstrap_servers": "127.0.0.1:9", "sinks.enabled": "stdout"}, "sinks.enabled"),
    ],
)
async def test_the_kafka_line_input_needs_the_kafka_sink_first(
    tmp_path: Path, settings: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        await _build(tmp_path, settings)


async def test_records_handed_out_while_a_partition_is_being_assigned_are_fed_after_it() -> None:
    # Field bug (about one central-mode run in six): aiokafka handed out a new partition's first
    # records while on_partitions_assigned still waited for the committed offsets' metadata; the
    # callback then dropped the partition's state, and the report those records opened was lost.
    mode = central()
    gate = asyncio.Event()

    class SlowAdmin:
        async def list_consumer_group_offsets(self, group: str, partitions: list[Any]) -> dict[Any, Any]:
            await gate.wait()
            return {}

    mode._admin = SlowAdmin()
    assigning = asyncio.create_task(mode.assigned([TP0]))
    await asyncio.sleep(0)  # the callback now waits for the metadata
    lines = report(7, 10.0)
    batch = {
        TP0: [SimpleNamespace(offset=i, key=b"host-a", value=line.encode()) for i, line in enumerate(lines)]
    }
    assert mode._ready(batch) == {}  # kept aside, not fed into state the callback resets
    gate.set()
    await assigning
    ready = mode._ready({})
    assert [m.offset for m in ready[TP0]] == [0, 1, 2]
    for tp, records in ready.items():
        for message in records:
            mode._consume(tp, mode._partition(tp), message, 0.0)
    released = [e for now in (5.0, 6.0) for p in mode._partitions.values() for e in p.assemblers.tick(now)]
    assert [event.victim.pid for event in released if event.victim] == [7]
