"""KmsgSource against a fake device: a SOCK_SEQPACKET socket keeps one record per read() like
/dev/kmsg does, and special payloads stand in for EPIPE / EIO from the kernel."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import streamer.sources.kmsg as kmsg_module
from parsers.records import KernelRecord, SourcePosition
from streamer.sources.base import SourceError
from streamer.sources.kmsg import KmsgSource, normalize_boot_id

BOOT = "0f6f30e8-cb7d-40d9-a4cc-14f0ff5e3af7"
BOOT_N = "0f6f30e8cb7d40d9a4cc14f0ff5e3af7"
OTHER_BOOT = "11111111222233334444555555555555"


def rec(seq: int, text: str = "", *, prio: int = 6, usec: int | None = None) -> bytes:
    usec = seq * 1000 if usec is None else usec
    return f"{prio},{seq},{usec},-;{text or f'message {seq}'}\n".encode()


class FakeKmsg(KmsgSource):
    def __init__(self, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        kwargs.setdefault("boot_id", BOOT)
        kwargs.setdefault("boot_time_unix", 1_000_000.0)
        super().__init__("/fake/kmsg", **kwargs)

    def _open_fd(self) -> int:
        return os.dup(self._sock.fileno())

    def _read_record(self, fd: int) -> bytes:
        data = super()._read_record(fd)
        if data == b"EPIPE":
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        if data == b"EIO":
            raise OSError(errno.EIO, "Input/output error")
        return data


@pytest.fixture
def device() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(kernel side, reader side) of a record-preserving fake /dev/kmsg."""
    kernel, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reader.setblocking(False)
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    yield kernel, reader
    kernel.close()
    reader.close()


async def take(source: KmsgSource, n: int, timeout: float = 3.0) -> list[KernelRecord]:
    out: list[KernelRecord] = []

    async def run() -> None:
        async for record in source.records():
            out.append(record)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def seqs(records: list[KernelRecord]) -> list[int | None]:
    return [r.position.seq if r.position else None for r in records]


async def test_records_positions_and_wall_time(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    for seq in range(3):
        kernel.send(rec(seq, usec=2_500_000 + seq))
    kernel.send(rec(3, "dev message\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0"))
    async with FakeKmsg(reader) as source:
        records = await take(source, 4)
    assert seqs(records) == [0, 1, 2, 3]
    first = records[0]
    assert first.message == "message 0"
    assert first.boot_id == BOOT_N
    assert first.position == SourcePosition(kind="kmsg", seq=0)  # the boot is in boot_id, not cursor
    assert source.checkpoint_data(first.position) == {"kind": "kmsg", "seq": 0, "boot_id": BOOT_N}
    assert first.kernel_time == 2.5
    assert first.wall_time == pytest.approx(1_000_002.5)
    assert first.time_source == "kmsg_boottime"
    assert first.trusted and first.facility == 0 and first.level == 6
    assert records[3].message == "dev message"
    assert source.counts["records"] == 4 and source.counts["lost"] == 0


async def test_seq_gap_is_counted_as_lost(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    for seq in (1, 2, 5, 6):
        kernel.send(rec(seq))
    async with FakeKmsg(reader) as source:
        assert seqs(await take(source, 4)) == [1, 2, 5, 6]
        assert source.counts["lost"] == 2 and source.counts["gaps"] == 1


async def test_epipe_counts_the_overwritten_records(
    device: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    kernel, reader = device
    kernel.send(rec(1))
    kernel.send(b"EPIPE")  # the kernel overwrote 2..6 before we read them
    kernel.send(rec(7))
    async with FakeKmsg(reader) as source:
        assert seqs(await take(source, 2)) == [1, 7]
        assert source.counts["epipe"] == 1
        assert source.counts["lost"] == 5
    assert "lost 5 kernel records (seq 2..6)" in caplog.text


async def test_checkpoint_same_boot_skips_seen_records(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    for seq in range(1, 6):
        kernel.send(rec(seq))
    checkpoint = SourcePosition(kind="kmsg", seq=3, cursor=BOOT_N)
    async with FakeKmsg(reader, start=checkpoint) as source:
        assert source.start_position() == checkpoint
        assert seqs(await take(source, 2)) == [4, 5]
        kernel.send(rec(6))
        assert seqs(await take(source, 1)) == [6]
        assert source.counts["skipped_checkpoint"] == 3
        assert source.counts["lost"] == 0


async def test_saved_checkpoint_resumes_through_the_component(
    device: tuple[socket.socket, socket.socket],
) -> None:
    """What checkpoint_data saved (or a checkpoint written before issue 11, boot id in cursor),
    read back by the kmsg component, skips what was published in this boot."""
    from streamer.sources.kmsg import KmsgOptions, kmsg_source

    kernel, reader = device
    for seq in range(1, 6):
        kernel.send(rec(seq))
    for saved in (
        {"kind": "kmsg", "seq": 3, "boot_id": BOOT_N},
        {"kind": "kmsg", "seq": 3, "cursor": BOOT_N},
    ):
        built = kmsg_source(KmsgOptions(), saved, host=None)
        assert built.start_position() == SourcePosition(kind="kmsg", seq=3)
        assert built._checkpoint_boot_id == BOOT_N
    built = kmsg_source(KmsgOptions(), {"kind": "kmsg", "seq": 3, "boot_id": BOOT_N}, host=None)
    async with FakeKmsg(reader, start=built._start, checkpoint_boot_id=built._checkpoint_boot_id) as source:
        assert seqs(await take(source, 2)) == [4, 5]
    assert kmsg_source(KmsgOptions(), None, host=None)._start == "oldest"
    assert kmsg_source(KmsgOptions(start="end"), {"kind": "kmsg", "seq": 3}, host=None)._start == "end"


async def test_checkpoint_accepts_dashed_boot_id(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    for seq in range(1, 4):
        kernel.send(rec(seq))
    async with FakeKmsg(reader, start=SourcePosition(kind="kmsg", seq=2, cursor=BOOT)) as source:
        assert seqs(await take(source, 1)) == [3]


async def test_checkpoint_older_than_ring_counts_records_lost_while_down(
    device: tuple[socket.socket, socket.socket],
) -> None:
    kernel, reader = device
    for seq in range(10, 13):  # 4..9 were overwritten while we were not running
        kernel.send(rec(seq))
    async with FakeKmsg(reader, start=SourcePosition(kind="kmsg", seq=3, cursor=BOOT_N)) as source:
        assert seqs(await take(source, 3)) == [10, 11, 12]
        assert source.counts["lost"] == 6


async def test_checkpoint_from_another_boot_reads_everything(
    device: tuple[socket.socket, socket.socket],
) -> None:
    kernel, reader = device
    for seq in range(0, 3):
        kernel.send(rec(seq))
    checkpoint = SourcePosition(kind="kmsg", seq=1000, cursor=OTHER_BOOT)
    async with FakeKmsg(reader, start=checkpoint) as source:
        assert seqs(await take(source, 3)) == [0, 1, 2]
        assert source.counts["checkpoint_other_boot"] == 1
        assert source.counts["lost"] == 0


async def test_checkpoint_without_boot_id(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    for seq in range(0, 3):
        kernel.send(rec(seq))
    # The boot id may come separately (the pipeline stores it beside the position).
    async with FakeKmsg(reader, start=SourcePosition(kind="kmsg", seq=1), checkpoint_boot_id=BOOT) as source:
        assert seqs(await take(source, 1)) == [2]
    kernel2, reader2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with kernel2, reader2:
        reader2.setblocking(False)
        for seq in range(0, 3):
            kernel2.send(rec(seq))
        # Unknown boot: a seq alone cannot be trusted, so repeat rather than lose.
        async with FakeKmsg(reader2, start=SourcePosition(kind="kmsg", seq=1)) as source:
            assert seqs(await take(source, 3)) == [0, 1, 2]
            assert source.counts["checkpoint_mismatch"] == 1


async def test_reader_never_waits_for_a_slow_consumer(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    kernel.send(rec(0))
    async with FakeKmsg(reader) as source:
        got: list[KernelRecord] = []
        release = asyncio.Event()

        async def slow_consumer() -> None:
            async for record in source.records():
                got.append(record)
                await release.wait()  # stuck processing the first record
                if len(got) == 301:
                    return

        task = asyncio.create_task(slow_consumer())
        await settle()
        for seq in range(1, 301):
            kernel.send(rec(seq))
        await settle()
        # The consumer still holds record 0, yet every record has left the "device".
        assert len(got) == 1
        assert source.counts["lines"] == 301
        assert source.buffered == 300
        release.set()
        await asyncio.wait_for(task, 3)
        assert seqs(got) == list(range(301))


async def test_buffer_overflow_drops_oldest_and_counts(
    device: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    kernel, reader = device
    async with FakeKmsg(reader, queue_records=5) as source:
        source.start()
        for seq in range(20):
            kernel.send(rec(seq))
        await settle()
        assert source.counts["lines"] == 20
        assert seqs(await take(source, 5)) == [15, 16, 17, 18, 19]
        assert source.counts["lost"] == 15
        assert source.counts["dropped_queue_full"] == 15
    assert "consumer too slow" in caplog.text


async def test_user_space_records_are_untrusted(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    kernel.send(rec(1, "Memory cgroup out of memory: Killed process 1 (fake)", prio=(1 << 3) | 3))
    async with FakeKmsg(reader) as source:
        (record,) = await take(source, 1)
        assert not record.trusted and record.facility == 1
        assert source.counts["untrusted"] == 1


async def test_wall_time_follows_clock_changes(
    device: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, reader = device
    offsets = iter([5000.0, 5000.0, 6000.0])  # at construction, then after a "suspend"
    monkeypatch.setattr(kmsg_module, "realtime_minus_monotonic", lambda: next(offsets))
    source = FakeKmsg(reader, boot_time_unix=None, boot_time_refresh=0.0)
    async with source:
        kernel.send(rec(1, usec=1_000_000))
        (first,) = await take(source, 1)
        kernel.send(rec(2, usec=2_000_000))
        (second,) = await take(source, 1)
    assert first.wall_time == pytest.approx(5001.0)
    assert second.wall_time == pytest.approx(6002.0)


def test_real_clock_offset_is_plausible() -> None:
    import time

    offset = kmsg_module.realtime_minus_monotonic()
    assert abs(offset + time.monotonic() - time.time()) < 0.01


async def test_aclose_ends_a_waiting_consumer(device: tuple[socket.socket, socket.socket]) -> None:
    _kernel, reader = device
    source = FakeKmsg(reader)
    task = asyncio.create_task(take(source, 1, timeout=5))
    await settle()
    await source.aclose()
    assert await asyncio.wait_for(task, 1) == []


async def test_read_error_surfaces_as_source_error(device: tuple[socket.socket, socket.socket]) -> None:
    kernel, reader = device
    kernel.send(rec(1))
    kernel.send(b"EIO")
    async with FakeKmsg(reader) as source:
        with pytest.raises(SourceError, match="Input/output error"):
            await take(source, 5)


async def test_missing_device_is_a_source_error(tmp_path: Any) -> None:
    source = KmsgSource(str(tmp_path / "kmsg"), boot_id=BOOT)
    with pytest.raises(SourceError, match="does not exist"):
        await take(source, 1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        KmsgSource(start="newest", boot_id=BOOT)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        KmsgSource(start=SourcePosition(kind="journald", cursor="x"), boot_id=BOOT)
    assert normalize_boot_id(BOOT.upper()) == BOOT_N
