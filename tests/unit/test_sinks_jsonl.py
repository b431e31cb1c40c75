"""Stdout and file JSON-lines sinks: what is written, when it is acknowledged, dead letters."""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from parsers.events import OomEvent, event_to_dict
from streamer.inputs import ScanOptions, events_from_bytes
from streamer.sinks import (
    DeadLetter,
    DeliveryStatus,
    DeliveryTally,
    FileSink,
    SinkClosedError,
    SinkConfigError,
    StdoutSink,
)

POD = "1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6{:04d}"
CID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab{:04d}"


def report(i: int, *, complete: bool = True) -> str:
    """A cgroup v2 memcg OOM report of a Kubernetes pod, as dmesg prints it (kernel 5.15)."""
    t = 1000.0 + i
    scope = (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{POD.format(i)}.slice/cri-containerd-{CID.format(i)}.scope"
    )
    pid = 10_000 + i
    lines = [
        f"[{t:.6f}] worker invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=984",
        f"[{t:.6f}] memory: usage 262144kB, limit 262144kB, failcnt {i}",
        f"[{t:.6f}] Memory cgroup stats for {scope}:",
        f"[{t:.6f}] anon 266002432",
    ]
    if complete:
        lines += [
            f"[{t:.6f}] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=x,mems_allowed=0,"
            f"oom_memcg={scope},task_memcg={scope},task=worker,pid={pid},uid=0",
            f"[{t:.6f}] Memory cgroup out of memory: Killed process {pid} (worker) total-vm:400000kB, "
            f"anon-rss:{200000 + i}kB, file-rss:1200kB, shmem-rss:0kB, UID:0 pgtables:600kB oom_score_adj:984",
        ]
    return "\n".join(lines) + "\n"


def make_events(count: int, *, partial_every: int = 0) -> list[OomEvent]:
    text = "".join(
        report(i, complete=not (partial_every and i % partial_every == partial_every - 1))
        for i in range(count)
    )
    return events_from_bytes(text.encode(), ScanOptions(host="node-a"))


def test_report_helper_parses_into_complete_and_partial_events() -> None:
    events = make_events(6, partial_every=3)
    assert len(events) == 6
    assert [e.partial for e in events] == [False, False, True, False, False, True]
    assert events[0].cgroup.pod_uid is not None and events[0].victim is not None
    assert events[2].raw_lines


async def test_stdout_sink_writes_json_lines_and_acknowledges_each() -> None:
    out = io.BytesIO()
    tally = DeliveryTally(keep_results=True)
    events = make_events(3)
    async with StdoutSink(out, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for n, event in enumerate(events):
            await sink.submit(event, [("file", n)])
    lines = out.getvalue().splitlines()
    assert [orjson.loads(line) for line in lines] == [event_to_dict(e) for e in events]
    assert [r.positions for r in tally.results] == [(("file", 0),), (("file", 1),), (("file", 2),)]
    assert all(r.status is DeliveryStatus.ACKED and r.acknowledged for r in tally.results)


async def test_stdout_sink_text_stream_and_dead_letter_stream() -> None:
    out, dead = io.StringIO(), io.StringIO()
    tally = DeliveryTally(keep_results=True)
    events = make_events(2, partial_every=2)
    async with StdoutSink(
        out, dead_letter_stream=dead, on_delivery=tally, registry=CollectorRegistry()
    ) as sink:
        for event in events:
            await sink.submit(event)
        await sink.submit_dead_letter(
            DeadLetter("unparseable_input", ("garbage line",), host="node-a"), ["p"]
        )
    assert len(out.getvalue().splitlines()) == 2  # the partial event is written like any other
    letters = [orjson.loads(line) for line in dead.getvalue().splitlines()]
    assert [letter["reason"] for letter in letters] == ["partial_report", "unparseable_input"]
    assert letters[0]["raw_lines"] == events[1].raw_lines and letters[0]["event_id"] == events[1].event_id
    assert letters[1]["raw_lines"] == ["garbage line"] and letters[1]["type"] == "dead_letter"
    statuses = [(r.status, r.dead_lettered) for r in tally.results]
    assert statuses == [
        (DeliveryStatus.ACKED, False),
        (DeliveryStatus.ACKED, True),
        (DeliveryStatus.DEAD_LETTERED, True),
    ]


async def test_dead_letter_without_dead_letter_stream_goes_to_main_stream() -> None:
    out = io.BytesIO()
    async with StdoutSink(out, registry=CollectorRegistry()) as sink:
        await sink.submit_dead_letter(DeadLetter("unparseable_input", ("x",)))
    assert orjson.loads(out.getvalue())["type"] == "dead_letter"


async def test_submit_outside_lifecycle_is_refused() -> None:
    sink = StdoutSink(io.BytesIO(), registry=CollectorRegistry())
    with pytest.raises(SinkClosedError):
        await sink.submit(make_events(1)[0])
    await sink.start()
    await sink.close()
    with pytest.raises(SinkClosedError):
        await sink.submit(make_events(1)[0])


async def test_file_sink_appends_and_acknowledges_after_write(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"existing": true}\n')
    tally = DeliveryTally(keep_results=True)
    events = make_events(3)
    async with FileSink(str(path), on_delivery=tally, registry=CollectorRegistry()) as sink:
        await sink.submit(events[0], [1])
        # Acknowledged once written, before any flush: another reader already sees the line.
        assert len(tally.results) == 1
        assert len(path.read_bytes().splitlines()) == 2
        for event in events[1:]:
            await sink.submit(event)
    lines = path.read_bytes().splitlines()
    assert orjson.loads(lines[0]) == {"existing": True}
    assert [orjson.loads(line) for line in lines[1:]] == [event_to_dict(e) for e in events]
    assert tally.sent == 3


async def test_file_sink_ack_on_fsync_holds_results_until_flush(tmp_path: Path) -> None:
    tally = DeliveryTally(keep_results=True)
    sink = FileSink(
        str(tmp_path / "e.jsonl"), ack_on="fsync", on_delivery=tally, registry=CollectorRegistry()
    )
    await sink.start()
    for event in make_events(2):
        await sink.submit(event)
    assert tally.results == []
    await sink.flush()
    assert tally.sent == 2
    await sink.close()


async def test_file_sink_dead_letter_file_and_errors(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    async with FileSink(
        str(tmp_path / "e.jsonl"), dead_letter_path=str(dead), registry=CollectorRegistry()
    ) as sink:
        for event in make_events(2, partial_every=2):
            await sink.submit(event)
    assert [orjson.loads(x)["reason"] for x in dead.read_bytes().splitlines()] == ["partial_report"]
    with pytest.raises(SinkConfigError, match="path="):
        await FileSink(str(tmp_path / "missing-dir" / "e.jsonl"), registry=CollectorRegistry()).start()
    with pytest.raises(SinkConfigError, match="ack_on"):
        FileSink("x", ack_on="never")  # type: ignore[arg-type]


async def test_file_sink_write_error_reports_failed(tmp_path: Path) -> None:
    tally = DeliveryTally(keep_results=True)
    sink = FileSink(str(tmp_path / "e.jsonl"), on_delivery=tally, registry=CollectorRegistry())
    await sink.start()
    assert sink._fd is not None
    os.close(sink._fd)  # simulate the descriptor going bad under us
    sink._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail with EBADF
    await sink.submit(make_events(1)[0], ["pos"])
    assert tally.failed == 1 and tally.failures[0].reason == "write_error"
    assert tally.failures[0].positions == ("pos",) and not tally.failures[0].acknowledged
    await sink.close()
