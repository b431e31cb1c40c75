"""Issue 9: deadlines run on a quiet node. A backlog read before the first tick, then silence,
must still be released: nothing waits for "the next record"."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from parsers.events import OomEvent
from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.records import KernelRecord, SourcePosition
from streamer.pipeline import Pipeline, PipelineSettings
from streamer.sinks.base import DeadLetter, DeliveryResult, DeliveryStatus, Sink


def report(pid: int, t: float, *, complete: bool = True) -> list[str]:
    lines = [
        f"[{t:12.6f}] app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        f"[{t:12.6f}] memory: usage 1024kB, limit 1024kB, failcnt 1",
    ]
    if complete:
        lines += [
            f"[{t:12.6f}] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
            f"oom_memcg=/a,task_memcg=/a,task=app,pid={pid},uid=0",
            f"[{t + 0.001:12.6f}] Memory cgroup out of memory: Killed process {pid} (app) total-vm:1kB, "
            "anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        ]
    return lines


def framed(lines: list[str]) -> list[KernelRecord]:
    framer = Framer()
    out: list[KernelRecord] = []
    offset = 0
    for line in lines:
        offset += len(line) + 1
        record = framer.frame(line.encode(), offset)
        assert record is not None
        out.append(record._replace(position=SourcePosition(kind="file", offset=offset, path="/t")))
    return out


# -- the assembler ------------------------------------------------------------------------------


def test_a_backlog_fed_before_any_tick_is_released_by_later_ticks_alone() -> None:
    """The bug: reports opened and held before the first tick carried no tick stamp, so only a
    later record could release them."""
    asm = Assembler(linger_seconds=1.0, report_timeout_seconds=3.0)
    out: list[OomEvent] = []
    for record in framed(report(10, 5.0) + report(11, 6.0)):
        out.extend(asm.feed(record))
    assert out == []
    out += asm.tick(500.0)  # the first tick: deadlines start here at the latest
    out += asm.tick(500.5)
    assert out == []  # the linger is not over yet
    out += asm.tick(501.6)
    out += asm.tick(502.7)
    assert sorted(e.victim.pid for e in out if e.victim) == [10, 11]
    assert not asm.busy


def test_the_deadline_starts_when_the_record_is_read_when_feed_gets_the_time() -> None:
    asm = Assembler(linger_seconds=1.0)
    out: list[OomEvent] = []
    for record in framed(report(12, 5.0)):
        out.extend(asm.feed(record, now=100.0))
    assert out == []
    # The first tick comes late (a long backlog): the linger counted from the read is over.
    out += asm.tick(101.2)
    out += asm.tick(102.3)
    assert [e.victim.pid for e in out if e.victim] == [12]


def test_an_unfinished_report_becomes_partial_after_the_timeout_without_more_input() -> None:
    asm = Assembler(linger_seconds=0.5, report_timeout_seconds=2.0)
    out: list[OomEvent] = []
    for record in framed(report(13, 5.0, complete=False)):
        out.extend(asm.feed(record, now=10.0))
    out += asm.tick(11.0)
    assert out == []
    out += asm.tick(12.1)  # the report times out: partial, then held for the linger
    out += asm.tick(12.7)
    assert len(out) == 1 and out[0].partial


def test_a_kill_line_cut_at_the_end_of_input_is_released_without_its_continuation() -> None:
    """dmesg prints a newline in a comm as a continuation line; when the input ends right after
    the first half, the pid alone still makes an event, on the clock."""
    asm = Assembler(linger_seconds=0.5)
    lines = report(14, 5.0)[:-1] + ["[    5.001000] Memory cgroup out of memory: Killed process 14 (ap"]
    out: list[OomEvent] = []
    for record in framed(lines):
        out.extend(asm.feed(record, now=10.0))
    out += asm.tick(10.6) + asm.tick(11.2) + asm.tick(11.8)
    assert [e.victim.pid for e in out if e.victim] == [14]


# -- the pipeline -------------------------------------------------------------------------------


class QuietSource:
    """A backlog yielded at once (before the pipeline's first tick), then silence until closed,
    like kmsg after a restart on a node where nothing else happens."""

    def __init__(self, lines: list[str]) -> None:
        self.name = "file:quiet"
        self.counts: Counter[str] = Counter()
        self._records = framed(lines)
        self._closed = asyncio.Event()

    async def records(self) -> AsyncIterator[KernelRecord]:
        for record in self._records:
            yield record
        await self._closed.wait()

    def start_position(self) -> SourcePosition | None:
        return None

    async def aclose(self) -> None:
        self._closed.set()


class ListSink(Sink):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(name="test", registry=CollectorRegistry(), **kwargs)
        self.delivered: list[OomEvent] = []

    async def start(self) -> None:
        return None

    async def submit(self, event: OomEvent, positions: Sequence[object] = ()) -> None:
        self.delivered.append(event)
        self._report(DeliveryResult(event.event_id, tuple(positions), DeliveryStatus.ACKED))

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        return None

    async def flush(self, timeout_seconds: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_pipeline_publishes_a_backlog_on_a_quiet_source_within_the_linger() -> None:
    lines = report(20, 5.0) + ["[    5.500000] unrelated"] + report(21, 6.0) + report(22, 7.0, complete=False)
    pipeline: Pipeline
    sink = ListSink(on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline(
        [QuietSource(lines)],
        sink,
        settings=PipelineSettings(linger_seconds=0.3, report_timeout_seconds=0.6, tick_seconds=0.05),
    )
    task = asyncio.create_task(pipeline.run())
    loop = asyncio.get_running_loop()
    began = loop.time()
    while len(sink.delivered) < 3 and loop.time() - began < 5.0:
        await asyncio.sleep(0.05)
    took = loop.time() - began
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    assert sorted(e.victim.pid for e in sink.delivered if e.victim) == [20, 21]
    assert [e.partial for e in sink.delivered].count(True) == 1
    assert took < 2.0, f"published after {took:.1f} s"
