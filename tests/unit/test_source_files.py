"""FileSource: backfill, tail -F follow (rotation, truncation), gzip, checkpoints, stdin."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.records import KernelRecord, SourcePosition
from streamer.sources.base import SourceError
from streamer.sources.files import FileSource, LineSplitter

POLL = 0.02


def dmesg(i: int, text: str = "msg") -> bytes:
    return f"[{i:5d}.000000] {text} {i}\n".encode()


class Iter:
    """Continue iterating one source across take() calls."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.it = source.records().__aiter__()

    async def take(self, n: int, timeout: float = 5.0) -> list[KernelRecord]:
        out: list[KernelRecord] = []

        async def run() -> None:
            while len(out) < n:
                out.append(await self.it.__anext__())

        await asyncio.wait_for(run(), timeout)
        return out

    async def close(self) -> None:
        await self.source.aclose()
        aclose = getattr(self.it, "aclose", None)
        if aclose is not None:
            await aclose()


async def read_all(source: FileSource) -> list[KernelRecord]:
    return [record async for record in source.records()]


async def checkpoint_after(path: Path, index: int) -> SourcePosition:
    """The position of record ``index`` of a first full read of ``path`` (what a checkpoint holds)."""
    position = (await read_all(FileSource(str(path))))[index].position
    assert position is not None
    return position


def messages(records: list[KernelRecord]) -> list[str]:
    return [r.message for r in records]


# -- backfill -------------------------------------------------------------------------------------


async def test_backfill_positions_are_past_each_line(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    data = b"".join(dmesg(i) for i in range(5))
    path.write_bytes(data)
    records = await read_all(FileSource(str(path)))
    assert messages(records) == [f"msg {i}" for i in range(5)]
    st_ = path.stat()
    ends = [data.index(b"\n", data.index(f"msg {i}".encode())) + 1 for i in range(5)]
    for record, end in zip(records, ends, strict=True):
        assert record.position == SourcePosition(
            kind="file", offset=end, path=str(path), device=st_.st_dev, inode=st_.st_ino
        )
        assert record.kernel_time is not None


async def test_resume_at_every_position_never_repeats(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"".join(dmesg(i) for i in range(6)) + b"[    6.000000] unterminated 6")
    records = await read_all(FileSource(str(path)))
    assert len(records) == 7
    for index, record in enumerate(records):
        assert record.position is not None
        source = FileSource(str(path), start=record.position)
        rest = await read_all(source)
        assert messages(rest) == messages(records[index + 1 :])
        assert source.counts["checkpoint_mismatch"] == 0


async def test_checkpoint_other_inode_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"".join(dmesg(i) for i in range(3)))
    checkpoint = await checkpoint_after(path, 1)
    # Replaced by a new file. Filesystems reuse a freed inode at once, so (device, inode)
    # may well match: the offset must also sit just past a newline in the new file.
    path.unlink()
    path.write_bytes(b"".join(dmesg(i, "newer") for i in range(3)))
    source = FileSource(str(path), start=checkpoint)
    assert messages(await read_all(source)) == [f"newer {i}" for i in range(3)]
    assert source.counts["checkpoint_mismatch"] == 1


async def test_checkpoint_at_eof_of_unterminated_line(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(dmesg(0) + b"[    1.000000] tail")
    checkpoint = await checkpoint_after(path, -1)
    assert checkpoint.offset == path.stat().st_size
    source = FileSource(str(path), start=checkpoint)
    assert await read_all(source) == []
    assert source.counts["checkpoint_mismatch"] == 0


async def test_checkpoint_beyond_size_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"".join(dmesg(i) for i in range(3)))
    checkpoint = await checkpoint_after(path, 2)
    with open(path, "r+b") as fh:  # same inode, truncated and rewritten shorter
        fh.truncate(0)
        fh.write(dmesg(9))
    source = FileSource(str(path), start=checkpoint)
    assert messages(await read_all(source)) == ["msg 9"]
    assert source.counts["checkpoint_mismatch"] == 1


async def test_checkpoint_in_rotated_file_is_finished_first(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"".join(dmesg(i) for i in range(3)))
    checkpoint = await checkpoint_after(path, 0)
    path.rename(tmp_path / "kern.log.1")  # logrotate with delaycompress
    path.write_bytes(dmesg(3))
    source = FileSource(str(path), start=checkpoint)
    assert messages(await read_all(source)) == ["msg 1", "msg 2", "msg 3"]
    assert source.counts["resumed_rotated"] == 1
    assert source.counts["checkpoint_mismatch"] == 0


async def test_missing_file_without_follow_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        await read_all(FileSource(str(tmp_path / "nope.log")))


async def test_huge_line_truncated_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    huge = b"[    1.000000] " + b"x" * (3 << 20)
    data = dmesg(0) + huge + b"\n" + dmesg(2)
    path.write_bytes(data)
    source = FileSource(str(path), chunk_bytes=64 << 10)  # the long line spans many chunks
    records = await read_all(source)
    assert len(records) == 3
    assert len(records[1].message.encode()) == (1 << 20) - len(b"[    1.000000] ")
    assert records[1].position is not None and records[2].position is not None
    assert records[1].position.offset == len(dmesg(0)) + len(huge) + 1
    assert records[2].message == "msg 2"
    assert source.counts["long_lines_truncated"] == 1


async def test_huge_line_within_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"y" * 5000 + b"\nshort\n")
    source = FileSource(str(path), max_line_bytes=1000)
    records = await read_all(source)
    assert messages(records) == ["y" * 1000, "short"]
    assert source.counts["long_lines_truncated"] == 1


async def test_invalid_utf8_is_escaped_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"[    1.000000] comm \xff\xfe name\n[    2.000000] caf\xc3\xa9\n")
    records = await read_all(FileSource(str(path)))
    assert messages(records) == ["comm \\xff\\xfe name", "café"]


async def test_gzip_backfill_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "kern.log.2.gz"
    data = b"".join(dmesg(i) for i in range(100))
    with gzip.open(path, "wb") as fh:
        fh.write(data)
    records = await read_all(FileSource(str(path), chunk_bytes=256))
    assert messages(records) == [f"msg {i}" for i in range(100)]
    assert records[-1].position is not None and records[-1].position.offset == len(data)
    checkpoint = records[41].position
    assert checkpoint is not None
    source = FileSource(str(path), start=checkpoint)
    assert messages(await read_all(source)) == [f"msg {i}" for i in range(42, 100)]
    assert source.counts["checkpoint_mismatch"] == 0


async def test_gzip_cannot_be_followed(tmp_path: Path) -> None:
    path = tmp_path / "kern.log.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(dmesg(0))
    with pytest.raises(SourceError, match="gzip"):
        await read_all(FileSource(str(path), follow=True))


async def test_truncated_gzip_is_a_source_error_after_its_records(tmp_path: Path) -> None:
    path = tmp_path / "kern.log.gz"
    path.write_bytes(gzip.compress(b"".join(dmesg(i) for i in range(2000)))[:-200])
    got: list[KernelRecord] = []
    with pytest.raises(SourceError, match="corrupt or truncated"):
        async for record in FileSource(str(path)).records():
            got.append(record)
    assert got and got[0].message == "msg 0"


# -- follow ----------------------------------------------------------------------------------------


async def test_follow_from_end_waits_for_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(dmesg(0) + b"[    1.000000] half")
    it = Iter(FileSource(str(path), follow=True, start="end", poll_seconds=POLL))
    try:
        first = asyncio.ensure_future(it.take(1))
        await asyncio.sleep(5 * POLL)  # the source is positioned before the line is finished
        with open(path, "ab") as fh:
            fh.write(b" written\n")
            fh.flush()
            # Starting "at the end" began after the last newline: the half line is read whole.
            assert messages(await first) == ["half written"]
            fh.write(b"[    2.000000] par")
            fh.flush()
            await asyncio.sleep(5 * POLL)
            fh.write(b"tial\n")
            fh.flush()
            assert messages(await it.take(1)) == ["partial"]
    finally:
        await it.close()


async def test_follow_rotation_finishes_old_file_first(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    writer = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open across the rotation
    source = FileSource(str(path), follow=True, poll_seconds=POLL)
    it = Iter(source)
    try:
        writer.write(dmesg(0))
        assert messages(await it.take(1)) == ["msg 0"]
        old_inode = path.stat().st_ino
        path.rename(tmp_path / "kern.log.1")
        # The writer has not reopened yet: these land in the rotated file, plus a last line
        # without newline that will never be finished.
        writer.write(dmesg(1) + b"[    2.000000] last words")
        writer.close()
        await asyncio.sleep(5 * POLL)
        path.write_bytes(dmesg(3) + dmesg(4))
        records = await it.take(4)
        assert messages(records) == ["msg 1", "last words", "msg 3", "msg 4"]
        assert [r.position.inode for r in records if r.position] == [old_inode] * 2 + [path.stat().st_ino] * 2
        assert records[2].position is not None and records[2].position.offset == len(dmesg(3))
        assert source.counts["rotations"] == 1
    finally:
        await it.close()


async def test_follow_truncation_restarts_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(dmesg(0) + dmesg(1))
    source = FileSource(str(path), follow=True, poll_seconds=POLL)
    it = Iter(source)
    try:
        assert messages(await it.take(2)) == ["msg 0", "msg 1"]
        with open(path, "r+b") as fh:  # copytruncate: same inode, emptied, rewritten
            fh.truncate(0)
        await asyncio.sleep(5 * POLL)
        with open(path, "ab") as fh:
            fh.write(dmesg(7))
        records = await it.take(1)
        assert messages(records) == ["msg 7"]
        assert records[0].position is not None and records[0].position.offset == len(dmesg(7))
        assert source.counts["truncations"] == 1 and source.counts["gaps"] == 1
    finally:
        await it.close()


@pytest.mark.parametrize("start", ["beginning", "end"])
async def test_follow_waits_for_missing_file(tmp_path: Path, start: str) -> None:
    path = tmp_path / "later.log"
    # Even from "end": a file created after we started is new from its first byte.
    it = Iter(FileSource(str(path), follow=True, poll_seconds=POLL, start=start))  # type: ignore[arg-type]
    try:
        first = asyncio.ensure_future(it.take(1))
        await asyncio.sleep(5 * POLL)
        path.write_bytes(dmesg(1))
        assert messages(await first) == ["msg 1"]
    finally:
        await it.close()


async def test_follow_checkpoint_then_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(dmesg(0) + dmesg(1) + dmesg(2))
    checkpoint = await checkpoint_after(path, 0)
    it = Iter(FileSource(str(path), follow=True, start=checkpoint, poll_seconds=POLL))
    try:
        assert messages(await it.take(2)) == ["msg 1", "msg 2"]
        with open(path, "ab") as fh:
            fh.write(dmesg(3))
        assert messages(await it.take(1)) == ["msg 3"]
    finally:
        await it.close()


async def test_aclose_ends_follow_promptly(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(b"")
    source = FileSource(str(path), follow=True, poll_seconds=10)

    async def consume() -> list[KernelRecord]:
        return [record async for record in source.records()]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await source.aclose()
    assert await asyncio.wait_for(task, 1) == []


# -- stdin ----------------------------------------------------------------------------------------


async def test_stdin_pipe(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    try:
        source = FileSource("-", stdin_fd=read_fd, chunk_bytes=7)
        assert source.name == "stdin"

        async def produce() -> None:
            for i in range(3):
                os.write(write_fd, dmesg(i))
                await asyncio.sleep(0.01)
            os.write(write_fd, b"[    3.000000] no newline at eof")
            os.close(write_fd)

        producer = asyncio.create_task(produce())
        records = await asyncio.wait_for(read_all(source), 5)
        await producer
        assert messages(records) == ["msg 0", "msg 1", "msg 2", "no newline at eof"]
        total = sum(len(dmesg(i)) for i in range(3))
        assert [r.position for r in records][2] == SourcePosition(kind="stdin", offset=total)
        assert records[3].position == SourcePosition(
            kind="stdin", offset=total + len(b"[    3.000000] no newline at eof")
        )
    finally:
        os.close(read_fd)


async def test_stdin_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    path.write_bytes(dmesg(0) + dmesg(1))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert messages(await read_all(FileSource("-", stdin_fd=fd))) == ["msg 0", "msg 1"]
    finally:
        os.close(fd)


def test_stdin_of_a_real_process_through_a_shell_pipe(tmp_path: Path) -> None:
    """The process's own fd 0 is a pipe fed by another process."""
    program = textwrap.dedent(
        """
        import asyncio
        from streamer.sources.files import FileSource
        async def main():
            async for r in FileSource("-").records():
                print(r.position.offset, r.message)
        asyncio.run(main())
        """
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["sh", "-c", f"printf '[ 1.0] a\\n[ 2.0] b\\n' | {sys.executable} -c '{program}'"],
        capture_output=True,
        timeout=20,
        cwd=root,
        check=True,
    )
    assert out.stdout.decode().splitlines() == ["9 a", "18 b"]


# -- line splitting ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"xyz\n", b"\r\n", b"\xff"]), max_size=60).map(
        b"".join
    ),
    cuts=st.lists(st.integers(0, 200), max_size=8),
    max_line=st.integers(1, 8),
)
def test_splitter_matches_naive_split_for_any_chunking(data: bytes, cuts: list[int], max_line: int) -> None:
    expected: list[tuple[bytes, int]] = []
    offset = 0
    pieces = data.split(b"\n")
    for index, line in enumerate(pieces):
        last = index == len(pieces) - 1
        if last and not line:
            break
        offset += len(line) + (0 if last else 1)
        expected.append((line[:max_line], offset))
    splitter = LineSplitter(max_line)
    got: list[tuple[bytes, int]] = []
    bounds = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    for begin, end in itertools.pairwise(bounds):
        got.extend(splitter.feed(data[begin:end]))
    tail = splitter.finish()
    if tail is not None:
        got.append(tail)
    assert got == expected
    assert splitter.truncated == sum(1 for line in pieces if len(line) > max_line)
