"""Pipeline: delivery of every event and checkpoints that never pass an unacknowledged report."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from parsers.events import OomEvent
from parsers.framing import Framer
from parsers.records import KernelRecord, SourcePosition
from streamer.pipeline import Pipeline, PipelineSettings
from streamer.sinks.base import DeadLetter, DeliveryResult, DeliveryStatus, Sink


def report(pid: int, t: float) -> list[str]:
    return [
        f"[{t:12.6f}] app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        f"[{t:12.6f}] memory: usage 1024kB, limit 1024kB, failcnt 1",
        f"[{t:12.6f}] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=app,pid={pid},uid=0",
        f"[{t + 0.001:12.6f}] Memory cgroup out of memory: Killed process {pid} (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]


class ListSource:
    def __init__(self, lines: list[str], name: str = "file:test") -> None:
        self.name = name
        self.checkpoint_key = name
        self.counts: Counter[str] = Counter()
        self._lines = lines
        self._framer = Framer()

    async def records(self) -> AsyncIterator[KernelRecord]:
        offset = 0
        for line in self._lines:
            offset += len(line) + 1
            record = self._framer.frame(line.encode(), offset)
            if record is not None:
                yield record._replace(position=SourcePosition(kind="file", offset=offset, path="/t"))
            await asyncio.sleep(0)

    def start_position(self) -> SourcePosition | None:
        return None

    def checkpoint_data(self, position: SourcePosition) -> dict[str, Any]:
        return {"kind": position.kind, **position.to_json()}

    async def aclose(self) -> None:
        return None


class HoldingSink(Sink):
    """Acknowledges every event except those whose victim pid is in ``hold``."""

    def __init__(self, hold: set[int], **kwargs: Any) -> None:
        super().__init__(name="test", registry=CollectorRegistry(), **kwargs)
        self.hold = hold
        self.delivered: list[OomEvent] = []

    async def start(self) -> None:
        return None

    async def submit(self, event: OomEvent, positions: Sequence[object] = ()) -> None:
        if event.victim is not None and event.victim.pid in self.hold:
            return
        self.delivered.append(event)
        self._report(DeliveryResult(event.event_id, tuple(positions), DeliveryStatus.ACKED))

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        return None

    async def flush(self, timeout_seconds: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    def load(self, source_name: str) -> dict[str, Any] | None:
        return self.saved.get(source_name)

    def save(self, source_name: str, data: dict[str, Any]) -> None:
        self.saved[source_name] = data


async def run_pipeline(lines: list[str], hold: set[int]) -> tuple[HoldingSink, MemoryCheckpoints, Pipeline]:
    checkpoints = MemoryCheckpoints()
    pipeline: Pipeline
    sink = HoldingSink(hold, on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline(
        [ListSource(lines)],
        sink,
        checkpoints=checkpoints,
        settings=PipelineSettings(tick_seconds=0.01, checkpoint_interval_seconds=0.01),
    )
    await asyncio.wait_for(pipeline.run(), 10)
    return sink, checkpoints, pipeline


async def test_all_events_delivered_and_checkpoint_reaches_the_end() -> None:
    lines = report(10, 1.0) + ["[    2.000000] unrelated"] + report(11, 3.0) + ["[    4.000000] tail line"]
    sink, checkpoints, pipeline = await run_pipeline(lines, hold=set())
    assert [e.victim.pid for e in sink.delivered if e.victim] == [10, 11]
    total = sum(len(line) + 1 for line in lines)
    assert checkpoints.saved["file:test"]["offset"] == total
    assert pipeline.counts["events_acknowledged"] == 2


async def test_checkpoint_stops_before_an_unacknowledged_report() -> None:
    first, second = report(10, 1.0), report(11, 3.0)
    lines = first + ["[    2.000000] unrelated"] + second + ["[    4.000000] tail"]
    sink, checkpoints, _ = await run_pipeline(lines, hold={11})
    assert [e.victim.pid for e in sink.delivered if e.victim] == [10]
    # the checkpoint is the record just before the held report's first line
    before_second = sum(len(line) + 1 for line in first + ["[    2.000000] unrelated"])
    assert checkpoints.saved["file:test"]["offset"] == before_second


class FlakySink(HoldingSink):
    """Fails every submission while ``down`` is set, like a sink whose retries ran out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(set(), **kwargs)
        self.down = True

    async def submit(self, event: OomEvent, positions: Sequence[object] = ()) -> None:
        if self.down:
            self._report(
                DeliveryResult(
                    event.event_id, tuple(positions), DeliveryStatus.FAILED, reason="connection_error"
                )
            )
            return
        await super().submit(event, positions)


async def test_failed_events_go_to_the_spool_and_drain_later(tmp_path: Any) -> None:
    from streamer.spool import Spool

    lines = report(10, 1.0) + report(11, 3.0) + ["[    9.000000] end"]
    spool = Spool(str(tmp_path / "spool"), max_bytes=1 << 20, segment_bytes=1 << 16)
    checkpoints = MemoryCheckpoints()
    pipeline: Pipeline
    sink = FlakySink(on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline(
        [ListSource(lines)], sink, checkpoints=checkpoints, spool=spool,
        settings=PipelineSettings(tick_seconds=0.01, checkpoint_interval_seconds=0.01),
    )  # fmt: skip
    task = asyncio.create_task(pipeline.run())
    for _ in range(300):
        await asyncio.sleep(0.01)
        if spool.events == 2:
            break
    assert spool.events == 2 and sink.delivered == []
    # durable in the spool, so the checkpoint may pass them
    for _ in range(100):
        await asyncio.sleep(0.01)
        if checkpoints.saved.get("file:test", {}).get("offset") == sum(len(x) + 1 for x in lines):
            break
    assert checkpoints.saved["file:test"]["offset"] == sum(len(x) + 1 for x in lines)
    sink.down = False
    await asyncio.wait_for(task, 10)
    for _ in range(300):
        if spool.events == 0:
            break
        await pipeline.delivery.drain_spool()
        await asyncio.sleep(0.01)
    assert [e.victim.pid for e in sink.delivered if e.victim] == [10, 11]
    assert spool.events == 0 and pipeline.counts["spool_resent"] == 2
    spool.close()


class EchoingSink(HoldingSink):
    """Reports every result twice (a sink bug): each ticket must still be settled once."""

    async def submit(self, event: OomEvent, positions: Sequence[object] = ()) -> None:
        await super().submit(event, positions)
        self._report(DeliveryResult(event.event_id, tuple(positions), DeliveryStatus.FAILED))


async def test_a_ticket_is_settled_once_however_often_the_sink_reports() -> None:
    from streamer.pipeline import Ticket

    lines = report(10, 1.0) + report(11, 3.0) + ["[    9.000000] end"]
    checkpoints = MemoryCheckpoints()
    pipeline: Pipeline
    sink = EchoingSink(set(), on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline(
        [ListSource(lines)], sink, checkpoints=checkpoints,
        settings=PipelineSettings(tick_seconds=0.01, checkpoint_interval_seconds=0.01),
    )  # fmt: skip
    seen: list[Ticket] = []
    original = sink.submit

    async def keep(event: OomEvent, positions: Sequence[object] = ()) -> None:
        seen.extend(p for p in positions if isinstance(p, Ticket))
        await original(event, positions)

    sink.submit = keep  # type: ignore[method-assign]
    await asyncio.wait_for(pipeline.run(), 10)
    assert len(seen) == 2 and all(ticket.settled for ticket in seen)
    # the late FAILED report neither spooled, counted nor un-acknowledged anything
    assert pipeline.counts["events_acknowledged"] == 2 and pipeline.counts["events_failed"] == 0
    assert checkpoints.saved["file:test"]["offset"] == sum(len(x) + 1 for x in lines)
