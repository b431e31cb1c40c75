"""JournaldSource against a REAL systemd-journald (started for this module if none runs).

Skips, printing why, when journald cannot run here (not root, binary missing, /dev/kmsg not
readable). Only a journald this module started is stopped again. The "missed messages" test
freezes that journald and floods the shared kernel ring: it runs only with
OOMLAB_KMSG_FLOOD=1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from oomlab import JournaldStatus, memcg, private_journald, run_oom

from parsers.oom import Assembler
from parsers.records import KernelRecord
from streamer.sources.journald import JournaldSource
from streamer.sources.kmsg import KmsgSource, read_boot_id

pytestmark = pytest.mark.journald


@pytest.fixture(scope="module")
def journald() -> Iterator[JournaldStatus]:
    with private_journald() as status:
        if not status:
            print(f"journald tests skipped: {status.reason}")
            pytest.skip(f"no systemd-journald: {status.reason}")
        yield status


def write_kmsg(text: str, prio: int = 6) -> None:
    fd = os.open("/dev/kmsg", os.O_WRONLY)  # per-write fd: the devkmsg ratelimit is per open file
    try:
        os.write(fd, f"<{prio}>{text}\n".encode())
    finally:
        os.close(fd)


class Follower:
    """Runs a source's records() in the background, collecting into a list."""

    def __init__(self, source: JournaldSource | KmsgSource) -> None:
        self.source = source
        self.records: list[KernelRecord] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.source.records():
            self.records.append(record)

    async def wait(self, found: Callable[[KernelRecord], bool], timeout: float = 15.0) -> KernelRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records:
                if found(record):
                    return record
            if self.task.done():
                self.task.result()
                raise AssertionError("source ended")
            await asyncio.sleep(0.05)
        raise AssertionError(f"not seen within {timeout} s; counts {dict(self.source.counts)}")

    async def stop(self) -> None:
        await self.source.aclose()
        await asyncio.wait_for(self.task, 10)


async def test_follow_marks_user_space_kmsg_lines_untrusted(journald: JournaldStatus) -> None:
    marker = f"oomstream-jd-{uuid.uuid4().hex[:12]}"
    follower = Follower(JournaldSource(since="-10min"))
    try:
        write_kmsg(f"{marker} Memory cgroup out of memory: Killed process 1 (init)", prio=3)
        record = await follower.wait(lambda r: marker in r.message)
    finally:
        await follower.stop()
    # journald files it under _TRANSPORT=kernel, but with SYSLOG_FACILITY=1: not the kernel.
    assert not record.trusted and record.facility == 1
    assert Assembler().feed(record) == []  # the forged kill line makes no event
    assert follower.source.counts["untrusted"] >= 1
    assert record.position is not None and record.position.cursor
    assert record.time_source == "journal_receive"


async def test_real_oom_kill_same_facts_as_kmsg_and_cursor_resume(
    journald: JournaldStatus, kernel_allows_oom: None
) -> None:
    name = f"srcjd-{uuid.uuid4().hex[:10]}"
    killed: list[int] = []

    def oom() -> None:
        with memcg([name], 64 << 20) as cgroup:
            killed.extend(run_oom(cgroup, comm="jdoom"))

    journal = Follower(JournaldSource(since="-1min"))
    kmsg = Follower(KmsgSource(start="end"))
    try:
        await asyncio.sleep(0.3)  # journalctl is up and past the backlog
        await asyncio.to_thread(oom)
        assert killed, "the allocator was not OOM-killed"
        kill_line = f"Killed process {killed[0]} (jdoom)"
        via_journal = await journal.wait(lambda r: kill_line in r.message)
        via_kmsg = await kmsg.wait(lambda r: kill_line in r.message)
        await asyncio.sleep(0.5)  # the rest of the report
    finally:
        await journal.stop()
        await kmsg.stop()
    # The same kill through both sources: same boot id, same kernel stamp, hence the same event id.
    assert via_journal.boot_id == via_kmsg.boot_id == read_boot_id()
    assert via_journal.kernel_time == via_kmsg.kernel_time
    assert via_journal.trusted and via_journal.level == 3
    ids = []
    for follower in (journal, kmsg):
        assembler = Assembler()
        events = [e for r in follower.records for e in assembler.feed(r)] + assembler.flush()
        ids.append({e.event_id for e in events if e.victim is not None and e.victim.pid == killed[0]})
    assert len(ids[0]) == 1 and ids[0] == ids[1]

    # Resume after the record before the kill line: the kill line comes first, nothing repeats.
    index = next(i for i, r in enumerate(journal.records) if kill_line in r.message)
    before = journal.records[index - 1].position
    assert before is not None and before.cursor is not None
    backfill = JournaldSource(after_cursor=before.cursor, follow=False)
    resumed = [r async for r in backfill.records()]
    assert kill_line in resumed[0].message
    assert [r.position for r in resumed[: len(journal.records) - index]] == [
        r.position for r in journal.records[index:]
    ]


async def test_follow_survives_journalctl_dying(journald: JournaldStatus) -> None:
    marker = f"oomstream-jd-{uuid.uuid4().hex[:12]}"
    source = JournaldSource(since="-1min", restart_initial_seconds=0.1)
    follower = Follower(source)
    try:
        write_kmsg(f"{marker} one")
        await follower.wait(lambda r: f"{marker} one" in r.message)
        proc = source._proc
        assert proc is not None
        proc.kill()
        write_kmsg(f"{marker} two")
        await follower.wait(lambda r: f"{marker} two" in r.message)
    finally:
        await follower.stop()
    assert source.counts["restarts"] == 1
    cursors = [r.position.cursor for r in follower.records if r.position is not None]
    assert len(cursors) == len(set(cursors)), "records repeated across the restart"
    assert [r.message for r in follower.records if marker in r.message] == [f"{marker} one", f"{marker} two"]


@pytest.mark.skipif(
    os.environ.get("OOMLAB_KMSG_FLOOD") != "1",
    reason="freezes journald and floods the shared kernel ring buffer; set OOMLAB_KMSG_FLOOD=1",
)
async def test_journald_missed_kernel_messages_are_counted(journald: JournaldStatus) -> None:
    if not journald.started_by_us or journald.pid is None:
        pytest.skip("only freezes a journald this test module started")
    marker = f"oomstream-jd-{uuid.uuid4().hex[:8]}"
    os.kill(journald.pid, signal.SIGSTOP)
    try:
        fd = -1
        for i in range(300):
            if i % 8 == 0:
                if fd >= 0:
                    os.close(fd)
                fd = os.open("/dev/kmsg", os.O_WRONLY)
            os.write(fd, f"<6>{marker} fill {i} {'x' * 900}\n".encode())
        os.close(fd)
    finally:
        os.kill(journald.pid, signal.SIGCONT)
    write_kmsg(f"{marker} after")
    source = JournaldSource(since="-1min")
    follower = Follower(source)
    try:
        await follower.wait(lambda r: f"{marker} after" in r.message)
        deadline = time.monotonic() + 5
        while source.counts["lost"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await follower.stop()
    assert source.counts["gaps"] >= 1 and source.counts["lost"] > 100
