"""KmsgSource against the REAL /dev/kmsg: user-space lines, a real memcg OOM kill, checkpoints.

Skips, with the reason, where the machine does not allow it (not root, no readable /dev/kmsg,
no cgroup v1 memory controller). The ring-overrun test floods the shared kernel ring buffer
(and so wipes everyone's dmesg history): it runs only with OOMLAB_KMSG_FLOOD=1.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable

import pytest
from oomlab import memcg, run_oom

from parsers.oom import Assembler
from parsers.records import KernelRecord
from streamer.sources.kmsg import KmsgOptions, KmsgSource, kmsg_source, read_boot_id
from streamer.sources.select import probe_kmsg

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module", autouse=True)
def _kmsg_usable() -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to write /dev/kmsg (euid {os.geteuid()})")
    problem = probe_kmsg()
    if problem is not None:
        pytest.skip(f"/dev/kmsg not usable: {problem}")


def write_kmsg(text: str, prio: int = 6) -> float:
    """Log one line through /dev/kmsg; returns the wall time of the write."""
    # A fresh fd per write: printk_devkmsg=ratelimit allows 10 lines per 5 s per open file.
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        now = time.time()
        os.write(fd, f"<{prio}>{text}\n".encode())  # without the newline the record stays open
        return now
    finally:
        os.close(fd)


async def collect_until(
    source: KmsgSource, done: Callable[[list[KernelRecord]], bool], timeout: float = 20.0
) -> list[KernelRecord]:
    got: list[KernelRecord] = []

    async def run() -> None:
        async for record in source.records():
            got.append(record)
            if done(got):
                return

    await asyncio.wait_for(run(), timeout)
    return got


def seqs(records: list[KernelRecord]) -> list[int]:
    return [r.position.seq for r in records if r.position is not None and r.position.seq is not None]


async def test_user_space_line_is_untrusted_and_timed() -> None:
    marker = f"oomstream-src-{uuid.uuid4().hex[:12]}"
    boot = read_boot_id()
    async with KmsgSource(start="end") as source:
        # Claims kernel facility 0 and mimics a kill line: the kernel still stamps facility 1.
        written = write_kmsg(f"{marker} Out of memory: Killed process 1 (init)", prio=0)
        records = await collect_until(source, lambda got: marker in got[-1].message)
    record = records[-1]
    assert record.facility == 1 and record.level == 0
    assert not record.trusted
    assert source.counts["untrusted"] >= 1
    assert Assembler().feed(record) == []  # a forged kill line makes no event
    assert record.boot_id == boot and len(boot) == 32
    assert record.position is not None and record.position.cursor is None  # the boot is in boot_id
    assert isinstance(record.position.seq, int)
    # kmsg stamps are the printk clock; wall = (REALTIME - MONOTONIC) + stamp.
    assert record.wall_time is not None and record.time_source == "kmsg_boottime"
    assert abs(record.wall_time - written) < 0.5, (record.wall_time, written)


async def test_real_oom_kill_arrives_with_contiguous_seqs(kernel_allows_oom: None) -> None:
    name = f"srctest-{uuid.uuid4().hex[:10]}"
    killed: list[int] = []

    def oom() -> None:
        with memcg([name], 64 << 20) as cgroup:
            killed.extend(run_oom(cgroup, comm="srcoom"))

    async with KmsgSource(start="end") as source:
        records: list[KernelRecord] = []

        async def consume() -> None:
            async for record in source.records():
                records.append(record)

        consumer = asyncio.create_task(consume())
        started = time.time()
        await asyncio.to_thread(oom)
        finished = time.time()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            f"Killed process {killed[0]} " in r.message for r in records
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # trailing lines (oom_reaper) if the kernel prints them
        await source.aclose()
        await consumer
    assert killed, "the allocator was not OOM-killed"
    numbers = seqs(records)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "seq gaps in a quiet stretch"
    assert source.counts["lost"] == 0 and source.counts["gaps"] == 0
    ours = [r for r in records if name in r.message or "srcoom" in r.message]
    assert any("invoked oom-killer" in r.message for r in ours)
    assert any(f"task_memcg=/{name}" in r.message for r in ours)
    kill = next(r for r in records if f"Killed process {killed[0]} (srcoom)" in r.message)
    assert kill.trusted and kill.facility == 0 and kill.level == 3
    assert kill.wall_time is not None and started - 0.5 <= kill.wall_time <= finished + 0.5
    # What the rest of the pipeline will make of it.
    assembler = Assembler()
    events = [e for r in records for e in assembler.feed(r)] + assembler.flush()
    (event,) = [e for e in events if e.victim is not None and e.victim.pid == killed[0]]
    assert event.boot_id == read_boot_id()
    assert event.cgroup.task_memcg == f"/{name}"


async def test_resume_from_checkpoint_skips_seen_records() -> None:
    marker = f"oomstream-src-{uuid.uuid4().hex[:12]}"
    async with KmsgSource(start="end") as source:
        for i in range(3):
            write_kmsg(f"{marker} line {i}")
        records = await collect_until(source, lambda got: f"{marker} line 2" in got[-1].message)
    mine = [r for r in records if marker in r.message]
    checkpoint = mine[1].position
    assert checkpoint is not None and checkpoint.seq is not None
    # What the pipeline saves for that record, read back the way the kmsg component does.
    saved = source.checkpoint_data(checkpoint)
    assert saved == {"kind": "kmsg", "seq": checkpoint.seq, "boot_id": read_boot_id()}

    async with kmsg_source(KmsgOptions(), saved, host=None) as resumed:
        after = await collect_until(resumed, lambda got: f"{marker} line 2" in got[-1].message)
    assert seqs(after)[0] == checkpoint.seq + 1
    assert [r.message for r in after if marker in r.message] == [f"{marker} line 2"]
    assert resumed.counts["skipped_checkpoint"] >= 2
    assert resumed.counts["lost"] == 0

    # The same seq from another boot says nothing: everything retained is read again.
    other = {"kind": "kmsg", "seq": checkpoint.seq, "boot_id": "0" * 32}
    first_fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        oldest = int(os.read(first_fd, 16384).split(b",")[1])
    finally:
        os.close(first_fd)
    async with kmsg_source(KmsgOptions(), other, host=None) as fresh:
        replay = await collect_until(fresh, lambda got: f"{marker} line 2" in got[-1].message)
    assert abs(seqs(replay)[0] - oldest) < 50  # the ring may have moved on a little meanwhile
    assert fresh.counts["checkpoint_other_boot"] == 1
    assert [r.message for r in replay if marker in r.message] == [f"{marker} line {i}" for i in range(3)]


@pytest.mark.skipif(
    os.environ.get("OOMLAB_KMSG_FLOOD") != "1",
    reason="floods the shared kernel ring buffer; set OOMLAB_KMSG_FLOOD=1 to run",
)
async def test_real_ring_overrun_is_counted_as_lost() -> None:
    marker = f"oomstream-flood-{uuid.uuid4().hex[:8]}"
    filler = "x" * 900
    async with KmsgSource(start="end") as source:
        write_kmsg(f"{marker} before")
        before = await collect_until(source, lambda got: f"{marker} before" in got[-1].message)
        # The loop is blocked (no await) while 256 KiB go through a 128 KiB ring: the reader
        # cannot run, exactly like a consumer hogging the CPU.
        fd = -1
        for i in range(290):
            if i % 8 == 0:
                if fd >= 0:
                    os.close(fd)
                fd = os.open("/dev/kmsg", os.O_WRONLY)
            os.write(fd, f"<6>{marker} fill {i} {filler}\n".encode())
        os.close(fd)
        write_kmsg(f"{marker} after")
        after = await collect_until(source, lambda got: f"{marker} after" in got[-1].message)
    assert source.counts["epipe"] == 1
    last_before = seqs(before)[-1]
    first_after = seqs(after)[0]
    assert source.counts["lost"] == first_after - last_before - 1 > 100
    assert source.counts["gaps"] == 1
    numbers = seqs(after)
    assert numbers == list(range(first_after, first_after + len(numbers)))
