"""K8sObjectLinesSource: Kubernetes objects as JSON lines from files, stdin and followed files."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from k8sfake.objects import ContainerSpec, make_event, make_events_k8s_io_event, make_pod, terminated

from parsers.events import (
    EVENT_TYPE_K8S_OOM_KILLED,
    EVENT_TYPE_K8S_OOM_KILLING,
    EVENT_TYPE_K8S_SYSTEM_OOM,
    K8sEvent,
    Source,
)
from streamer.sources.base import SourceError
from streamer.sources.k8s_objects import K8sObjectLinesSource, unwrap_objects

KILL = (
    "Memory cgroup out of memory: Killed process {pid} (python3) total-vm:1048576kB, anon-rss:524288kB, "
    "file-rss:1024kB, shmem-rss:0kB, UID:1000 pgtables:1100kB oom_score_adj:985"
)


def oom_killing(pid: int = 4242, **kwargs: Any) -> dict[str, Any]:
    """A node-problem-detector OOMKilling Event on the node, as the API server returns it."""
    return make_event(reason="OOMKilling", message=KILL.format(pid=pid), **kwargs)


def system_oom(pid: int = 777) -> dict[str, Any]:
    return make_events_k8s_io_event(
        reason="SystemOOM", note=f"System OOM encountered, victim process: stress, pid: {pid}"
    )


def oom_pod(name: str = "web-1") -> dict[str, Any]:
    return make_pod(
        name=name,
        containers=[ContainerSpec(name="app", restart_count=1, last_state=terminated("OOMKilled"))],
    )


def line(doc: Any) -> bytes:
    return orjson.dumps(doc) + b"\n"


async def read_all(source: K8sObjectLinesSource, timeout: float = 10) -> list[K8sEvent]:
    async def collect() -> list[K8sEvent]:
        async with source:
            return [event async for event in source.signals()]

    return await asyncio.wait_for(collect(), timeout)


async def take(signals: AsyncIterator[K8sEvent], n: int, timeout: float = 10) -> list[K8sEvent]:
    out: list[K8sEvent] = []

    async def collect() -> None:
        async for event in signals:
            out.append(event)
            if len(out) == n:
                return

    await asyncio.wait_for(collect(), timeout)
    return out


# -- shapes -----------------------------------------------------------------------------------------


async def test_every_wrapper_shape_gives_its_signal_with_its_line_position(tmp_path: Path) -> None:
    exporter = oom_killing(pid=6)  # kubernetes-event-exporter: the Event without TypeMeta, labels added
    del exporter["kind"], exporter["apiVersion"]
    exporter["involvedObject"]["labels"] = {"kubernetes.io/hostname": "node-a"}
    kindless_pod = oom_pod("kindless-1")
    del kindless_pod["kind"], kindless_pod["apiVersion"]
    listed = oom_killing(pid=9)
    del listed["kind"], listed["apiVersion"]
    docs = [
        oom_killing(pid=1),  # bare core/v1 Event
        system_oom(pid=2),  # bare events.k8s.io/v1 Event
        {"type": "ADDED", "object": oom_killing(pid=3)},  # watch event
        {"event": oom_killing(pid=4)},  # exporter envelope
        {"object": oom_killing(pid=5)},  # envelope without a watch type
        exporter,
        {"type": "MODIFIED", "object": oom_pod()},  # Pod with an OOMKilled lastState
        kindless_pod,
        {"apiVersion": "v1", "kind": "EventList", "items": [listed]},
        {"event": {"type": "ADDED", "object": oom_killing(pid=10)}},  # envelope around a watch event
    ]
    data = b"".join(line(doc) for doc in docs)
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    source = K8sObjectLinesSource(str(path), node="node-a")
    assert source.name == f"k8s-file:{path}"
    signals = await read_all(source)

    assert [s.type for s in signals] == [
        EVENT_TYPE_K8S_OOM_KILLING,
        EVENT_TYPE_K8S_SYSTEM_OOM,
        *[EVENT_TYPE_K8S_OOM_KILLING] * 4,
        EVENT_TYPE_K8S_OOM_KILLED,
        EVENT_TYPE_K8S_OOM_KILLED,
        EVENT_TYPE_K8S_OOM_KILLING,
        EVENT_TYPE_K8S_OOM_KILLING,
    ]
    assert [s.pid for s in signals if s.type != EVENT_TYPE_K8S_OOM_KILLED] == [1, 2, 3, 4, 5, 6, 9, 10]
    ends = [sum(len(line(doc)) for doc in docs[: i + 1]) for i in range(len(docs))]
    assert [s.source for s in signals] == [
        Source(kind="k8s_file", format="k8s_json", position={"path": str(path), "offset": end, "line": n})
        for n, end in enumerate(ends, 1)
    ]
    assert ends[-1] == len(data)
    assert source.counts["lines"] == len(docs)
    assert source.counts["objects"] == len(docs)
    assert source.counts["signals"] == len(docs)
    assert source.counts["bad_lines"] == 0


def test_unwrap_keeps_watch_events_and_opens_envelopes() -> None:
    event = oom_killing()
    assert unwrap_objects(event) == [event]
    assert unwrap_objects({"type": "DELETED", "object": event}) == [{"type": "DELETED", "object": event}]
    assert unwrap_objects({"event": {"type": "ADDED", "object": event}}) == [
        {"type": "ADDED", "object": event}
    ]
    assert unwrap_objects({"object": event, "type": "Warning"}) == [event]  # not a watch type
    assert unwrap_objects({"metadata": {"name": "x"}, "data": {}}) is None
    nested: dict[str, Any] = event
    for _ in range(10):
        nested = {"event": nested}
    assert unwrap_objects(nested) is None  # bounded unwrapping


async def test_count_increments_give_exactly_one_signal_per_occurrence(tmp_path: Path) -> None:
    uid = "3b0e7f5c-1111-4c0a-9d7e-000000000001"
    docs = [
        oom_killing(uid=uid, count=1, resource_version="10"),
        oom_killing(uid=uid, count=1, resource_version="10"),  # the same object again
        {"type": "MODIFIED", "object": oom_killing(uid=uid, count=3, resource_version="12")},
        oom_killing(uid=uid, count=2, resource_version="11"),  # stale, arrives late
        {"event": oom_killing(uid=uid, count=4, resource_version="13")},
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(doc) for doc in docs))
    source = K8sObjectLinesSource(str(path))
    signals = await read_all(source)
    assert [s.occurrence for s in signals] == [1, 2, 3, 4]
    assert len({s.event_id for s in signals}) == 4
    assert [s.source.position["line"] for s in signals] == [1, 3, 3, 5]  # type: ignore[index]
    assert source.tracker.counts["skipped_duplicate"] == 1
    assert source.tracker.counts["skipped_stale"] == 1

    # Reading the file again (a restart: acknowledged() commits nothing) gives the same ids.
    again = await read_all(K8sObjectLinesSource(str(path)))
    assert [s.event_id for s in again] == [s.event_id for s in signals]


# -- bad input ----------------------------------------------------------------------------------------


async def test_garbage_is_counted_and_logged_rate_limited_never_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = [
        b"this is not json",
        b'{"kind": "Event", "metadata": ',  # cut off
        b"[1, 2, 3]",
        b"42",
        b'"a string"',
        b"null",
        b"\xff\xfe{\x80}",  # not UTF-8
        b'{"reason": "OOMKilling", "message": "\xc3\x28"}',  # invalid UTF-8 inside valid-looking JSON
        b'{"hello": "world"}',  # an object of no Kubernetes shape
        b"",
        b"   ",
    ]
    body = line(oom_killing(pid=1)) + b"\n".join(garbage) + b"\n" + line(oom_killing(pid=2))
    body += b"not json either\n" * 50
    body += line(oom_killing(pid=3)).rstrip(b"\n")  # no newline at the end
    path = tmp_path / "events.jsonl"
    path.write_bytes(body)
    with caplog.at_level(logging.WARNING, logger="oomstream.sources.k8s_objects"):
        source = K8sObjectLinesSource(str(path))
        signals = await read_all(source)
    assert [s.pid for s in signals] == [1, 2, 3]
    assert signals[-1].source.position == {"path": str(path), "offset": len(body), "line": len(garbage) + 53}
    counts = source.counts
    assert counts["bad_json"] == 2 + 50
    assert counts["not_object"] == 4
    assert counts["bad_utf8"] == 2
    assert counts["bad_lines"] == 2 + 50 + 4 + 2
    assert counts["skipped_unrecognized"] == 1
    assert counts["blank_lines"] == 2
    assert counts["lines"] == len(garbage) + 53
    # One warning per reason per interval, naming the line: the 50 bad lines do not flood the log.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4, warnings
    assert any("line 2: not JSON" in w for w in warnings)
    assert any("not UTF-8" in w for w in warnings)


async def test_a_2mb_line_is_counted_long_and_the_next_line_still_read(tmp_path: Path) -> None:
    huge = oom_killing(pid=1)
    huge["message"] = "x" * (2 << 20)
    docs = [oom_killing(pid=0), huge, oom_killing(pid=2)]
    data = b"".join(line(doc) for doc in docs)
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    source = K8sObjectLinesSource(str(path))
    signals = await read_all(source)
    assert [s.pid for s in signals] == [0, 2]
    assert signals[1].source.position == {"path": str(path), "offset": len(data), "line": 3}
    assert source.counts["long_lines"] == 1
    assert source.counts["bad_lines"] == 0

    # A line of exactly max_line_bytes is not long.
    exact = line(oom_killing(pid=5))
    path.write_bytes(exact)
    source = K8sObjectLinesSource(str(path), max_line_bytes=len(exact) - 1)
    assert [s.pid for s in await read_all(source)] == [5]
    source = K8sObjectLinesSource(str(path), max_line_bytes=len(exact) - 2)
    assert await read_all(source) == []
    assert source.counts["long_lines"] == 1


class ExplodingTracker:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def from_object(self, obj: dict[str, Any], *, source: Source, node: str | None = None) -> list[K8sEvent]:
        raise RuntimeError("tracker bug")


async def test_a_failing_tracker_is_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(oom_killing()) * 3)
    source = K8sObjectLinesSource(str(path), tracker=ExplodingTracker())
    assert await read_all(source) == []
    assert source.counts["tracker_errors"] == 3


async def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        await read_all(K8sObjectLinesSource(str(tmp_path / "nope.jsonl")))


async def test_gzip_backfill(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(line(oom_killing(pid=1)) + line(system_oom(pid=2))))
    assert [s.pid for s in await read_all(K8sObjectLinesSource(str(path)))] == [1, 2]


# -- stdin ---------------------------------------------------------------------------------------------


async def test_stdin_pipe_in_small_pieces() -> None:
    docs = [oom_killing(pid=1), {"type": "ADDED", "object": system_oom(pid=2)}, {"event": oom_pod()}]
    data = b"".join(line(doc) for doc in docs) + b"garbage\n" + line(oom_killing(pid=4)).rstrip(b"\n")
    read_fd, write_fd = os.pipe()
    try:
        source = K8sObjectLinesSource("-", stdin_fd=read_fd)
        assert source.name == "k8s-stdin"

        async def produce() -> None:
            for start in range(0, len(data), 333):
                os.write(write_fd, data[start : start + 333])
                await asyncio.sleep(0.002)
            os.close(write_fd)

        producer = asyncio.create_task(produce())
        signals = await read_all(source)
        await producer
    finally:
        os.close(read_fd)
    assert [s.type for s in signals] == [
        EVENT_TYPE_K8S_OOM_KILLING,
        EVENT_TYPE_K8S_SYSTEM_OOM,
        EVENT_TYPE_K8S_OOM_KILLED,
        EVENT_TYPE_K8S_OOM_KILLING,
    ]
    assert {s.source.kind for s in signals} == {"k8s_stdin"}
    assert signals[-1].source.position == {"path": "-", "offset": len(data), "line": 5}
    assert source.counts["bad_json"] == 1


async def test_stdin_redirected_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(oom_killing(pid=1)) + b"\xff\n" + line(oom_killing(pid=2)))
    fd = os.open(path, os.O_RDONLY)
    try:
        source = K8sObjectLinesSource("-", stdin_fd=fd)
        assert [s.pid for s in await read_all(source)] == [1, 2]
        assert source.counts["bad_utf8"] == 1
    finally:
        os.close(fd)


# -- follow ----------------------------------------------------------------------------------------------


async def test_follow_picks_up_appended_lines_and_count_increments(tmp_path: Path) -> None:
    uid = "3b0e7f5c-2222-4c0a-9d7e-000000000002"
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(oom_killing(uid=uid, count=1)))
    source = K8sObjectLinesSource(str(path), follow=True, poll_seconds=0.02)
    signals = source.signals()
    first = await take(signals, 1)
    assert [s.occurrence for s in first] == [1]

    with path.open("ab") as f:
        f.write(line(oom_killing(uid=uid, count=3)))
        f.write(b"{garbage\n")
        f.write(line(oom_killing(uid=uid, count=3)))  # unchanged: no new signal
        f.write(line({"type": "MODIFIED", "object": oom_killing(uid=uid, count=4)})[:50])  # half a line
    more = await take(signals, 2)
    assert [s.occurrence for s in more] == [2, 3]
    assert [s.source.position["line"] for s in more] == [2, 2]  # type: ignore[index]

    with path.open("ab") as f:
        f.write(line({"type": "MODIFIED", "object": oom_killing(uid=uid, count=4)})[50:])
    last = await take(signals, 1)
    assert [s.occurrence for s in last] == [4]
    assert last[0].source.position == {"path": str(path), "offset": path.stat().st_size, "line": 5}
    assert source.counts["bad_json"] == 1

    source.acknowledged(last[0])  # a no-op for files
    await source.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(signals), 5)


async def test_follow_waits_for_the_file_and_aclose_ends_it(tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    async with K8sObjectLinesSource(str(path), follow=True, poll_seconds=0.02) as source:
        signals = source.signals()
        pending = asyncio.create_task(take(signals, 1))
        await asyncio.sleep(0.1)
        path.write_bytes(line(oom_killing(pid=9)))
        assert [s.pid for s in await pending] == [9]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(signals), 5)


async def test_follow_truncation_restarts_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(oom_killing(pid=1)) + line(oom_killing(pid=2)))
    async with K8sObjectLinesSource(str(path), follow=True, poll_seconds=0.02) as source:
        signals = source.signals()
        assert [s.source.position["line"] for s in await take(signals, 2)] == [1, 2]  # type: ignore[index]
        path.write_bytes(line(oom_killing(pid=3)))  # copytruncate: shorter than before
        again = await take(signals, 1)
        assert again[0].pid == 3
        assert again[0].source.position == {"path": str(path), "offset": path.stat().st_size, "line": 1}
        assert source.counts["truncations"] == 1
