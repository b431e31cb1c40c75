"""JournaldSource against a scripted fake journalctl (argv recorded, output per run)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from parsers.records import KernelRecord, SourcePosition
from streamer.sources.base import SourceError
from streamer.sources.journald import MISSED_MESSAGE_ID, JournaldSource

MATCH = ["_TRANSPORT=kernel", "+", f"MESSAGE_ID={MISSED_MESSAGE_ID}"]

FAKE = """#!{python}
import json, os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "argv.log"), "a+") as log:
    log.seek(0)
    run = sum(1 for _ in log)
    log.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid()}}) + "\\n")
runs = json.load(open(os.path.join(here, "scenario.json")))
step = runs[min(run, len(runs) - 1)]
for line in step.get("lines", []):
    sys.stdout.write(line + "\\n")
sys.stdout.flush()
sys.stderr.write(step.get("stderr", ""))
if step.get("hang"):
    time.sleep(60)
sys.exit(step.get("rc", 0))
"""


def entry(n: int, message: Any = None, **fields: str) -> str:
    data: dict[str, Any] = {
        "__CURSOR": f"s=abc;i={n}",
        "__REALTIME_TIMESTAMP": str(1_700_000_000_000_000 + n),
        "_SOURCE_MONOTONIC_TIMESTAMP": str(1_000_000 * n),
        "_TRANSPORT": "kernel",
        "SYSLOG_FACILITY": "0",
        "SYSLOG_IDENTIFIER": "kernel",
        "PRIORITY": "6",
        "_BOOT_ID": "0f6f30e8cb7d40d9a4cc14f0ff5e3af7",
        "_HOSTNAME": "node-1",
        "MESSAGE": f"kernel message {n}" if message is None else message,
    }
    data.update(fields)
    return orjson.dumps(data).decode()


def fake_journalctl(tmp_path: Path, runs: list[dict[str, Any]]) -> str:
    script = tmp_path / "journalctl"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    (tmp_path / "scenario.json").write_text(json.dumps(runs))
    return str(script)


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "argv.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


async def collect(source: JournaldSource, n: int | None = None, timeout: float = 10.0) -> list[KernelRecord]:
    out: list[KernelRecord] = []

    async def run() -> None:
        async for record in source.records():
            out.append(record)
            if n is not None and len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_backfill_frames_kernel_entries(tmp_path: Path) -> None:
    exe = fake_journalctl(
        tmp_path,
        [
            {
                "lines": [
                    entry(1),
                    entry(2, _TRANSPORT="syslog", SYSLOG_IDENTIFIER="kernel"),  # impostor
                    entry(3, "Out of memory: Killed process 9 (x)", SYSLOG_FACILITY="1"),
                    entry(4, list(b"comm \xff name")),  # non-UTF-8 MESSAGE as a byte array
                    entry(5, "Missed 17 kernel messages", _TRANSPORT="driver", MESSAGE_ID=MISSED_MESSAGE_ID),
                    "not json",
                ]
            }
        ],
    )
    source = JournaldSource(follow=False, journalctl=exe)
    records = await collect(source)
    assert [r.message for r in records] == [
        "kernel message 1",
        "Out of memory: Killed process 9 (x)",
        "comm \\xff name",
    ]
    first = records[0]
    assert first.position == SourcePosition(kind="journald", cursor="s=abc;i=1")
    assert first.kernel_time == 1.0 and first.wall_time == pytest.approx(1_700_000_000.000001)
    assert first.boot_id == "0f6f30e8cb7d40d9a4cc14f0ff5e3af7" and first.host == "node-1"
    assert first.trusted
    # Written to /dev/kmsg by user space: kernel transport, but facility 1.
    assert not records[1].trusted and records[1].facility == 1
    assert source.counts["untrusted"] == 1
    assert source.counts["skipped_untrusted"] == 1
    assert source.counts["bad_json"] == 1
    assert source.counts["restarts"] == 0
    # journald's notice about kmsg records it never saw is loss accounting, not a record.
    assert source.counts["lost"] == 17 and source.counts["gaps"] == 1
    assert source.last_cursor == "s=abc;i=5"
    (call,) = calls(tmp_path)
    assert call["argv"] == ["-o", "json", "--no-pager", "-b", *MATCH]


async def test_backfill_failure_carries_stderr(tmp_path: Path) -> None:
    exe = fake_journalctl(
        tmp_path, [{"rc": 1, "stderr": "Failed to open /nope: No such file or directory\n"}]
    )
    with pytest.raises(SourceError, match="status 1: Failed to open /nope"):
        await collect(JournaldSource(follow=False, journalctl=exe, directory="/nope"))
    assert "--directory=/nope" in calls(tmp_path)[0]["argv"]


async def test_follow_restarts_after_last_cursor(tmp_path: Path) -> None:
    exe = fake_journalctl(
        tmp_path,
        [
            {"lines": [entry(1), entry(2)], "rc": 1, "stderr": "journal rotated\n"},
            {"lines": [entry(3)], "hang": True},
        ],
    )
    source = JournaldSource(journalctl=exe, restart_initial_seconds=0.01, since="-1h")
    records = await collect(source, 3)
    assert [r.position.cursor for r in records if r.position] == ["s=abc;i=1", "s=abc;i=2", "s=abc;i=3"]
    assert source.counts["restarts"] == 1
    first, second = calls(tmp_path)
    assert first["argv"] == ["-o", "json", "--no-pager", "-b", *MATCH, "--since=-1h", "--follow", "--no-tail"]
    # Resuming by cursor reads all boots (no -b), so a reboot in between loses nothing.
    assert second["argv"] == [
        "-o",
        "json",
        "--no-pager",
        *MATCH,
        "--after-cursor=s=abc;i=2",
        "--follow",
        "--no-tail",
    ]
    # collect() stopped iterating: the hanging journalctl was reaped, not left behind.
    await asyncio.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(second["pid"], 0)


async def test_aclose_stops_a_following_journalctl(tmp_path: Path) -> None:
    exe = fake_journalctl(tmp_path, [{"lines": [entry(1)], "hang": True}])
    source = JournaldSource(journalctl=exe, after_cursor="s=abc;i=0")
    assert source.start_position() == SourcePosition(kind="journald", cursor="s=abc;i=0")
    got: list[KernelRecord] = []

    async def consume() -> None:
        async for record in source.records():
            got.append(record)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    await source.aclose()
    await asyncio.wait_for(task, 5)
    (call,) = calls(tmp_path)
    assert "--after-cursor=s=abc;i=0" in call["argv"] and "_TRANSPORT=kernel" in call["argv"]
    with pytest.raises(ProcessLookupError):
        os.kill(call["pid"], 0)


async def test_missing_journalctl(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found in PATH"):
        await collect(JournaldSource(journalctl="no-such-journalctl-binary"))
    with pytest.raises(SourceError, match="not executable"):
        await collect(JournaldSource(journalctl=str(tmp_path / "journalctl")))


def test_argv_shapes() -> None:
    source = JournaldSource(file="/x/system.journal", follow=False)
    assert source.argv("jc", None) == ["jc", "-o", "json", "--no-pager", *MATCH, "--file=/x/system.journal"]
    with pytest.raises(ValueError):
        JournaldSource(file="a", directory="b")
