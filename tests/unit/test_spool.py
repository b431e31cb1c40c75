"""The on-disk spool: order, acknowledgement, restarts, torn records, overflow, bounds."""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.spool import MAGIC, Spool, SpoolError, SpoolRecordTooLarge

SEGMENT = 4096
MAX = 1 << 20


def value(i: int, size: int = 100) -> bytes:
    return f"event-{i:06d}-".encode().ljust(size, b".")


def values(spool: Spool) -> list[bytes]:
    return [record.value for record in spool.iterate()]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.spool"))


def crash(spool: Spool) -> None:
    """Drop the spool as a killed process would: no flush, no cursor fsync, lock released."""
    assert spool._lock is not None
    spool._lock.release()
    if spool._fd is not None:
        os.close(spool._fd)
    spool._closed = True


def test_append_peek_ack_in_order(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(5):
            spool.append(f"k{i}".encode(), value(i), {"positions": [{"kind": "kmsg", "seq": i}]})
        assert spool.events == 5
        first_two = spool.peek(2)
        assert [r.value for r in first_two] == [value(0), value(1)]
        assert first_two[0].key == b"k0"
        assert first_two[1].meta == {"positions": [{"kind": "kmsg", "seq": 1}]}
        assert spool.peek(2) == first_two  # peek does not consume
        assert spool.ack(2) == 2
        assert [r.value for r in spool.peek(10)] == [value(i) for i in (2, 3, 4)]
        popped = spool.pop()
        assert popped is not None and popped.value == value(2)
        assert spool.ack_through(spool.peek(2)[-1]) == 2
        assert spool.events == 0
        assert spool.pop() is None
        assert spool.ack(3) == 0
        stats = spool.stats()
        assert (stats.appended_events, stats.acked_events, stats.events) == (5, 5, 0)


def test_none_key_empty_meta_and_binary_values(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        spool.append(None, b"")
        spool.append(b"", bytes(range(256)), None)
        records = spool.peek(5)
        assert [(r.key, r.value, r.meta) for r in records] == [(None, b"", {}), (b"", bytes(range(256)), {})]


def test_order_across_segments_and_acked_segments_are_deleted(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(200):
            spool.append(None, value(i))
        assert len(segments(tmp_path)) > 3
        assert values(spool) == [value(i) for i in range(200)]
        spool.ack(150)
        assert values(spool) == [value(i) for i in range(150, 200)]
        assert len(segments(tmp_path)) <= 3
        assert spool.total_bytes == sum(p.stat().st_size for p in segments(tmp_path))


def test_iteration_sees_appends_rolls_and_overflow_drops(tmp_path: Path) -> None:
    with Spool(str(tmp_path), 4 * SEGMENT, SEGMENT) as spool:
        spool.append(None, value(0, 1000))
        spool.ack(1)  # the head segment is fully acknowledged but still the active one
        spool.append(None, value(1, 1000))
        seen = []
        for record in spool.iterate():
            seen.append(record.value)
            if len(seen) < 30:
                spool.append(None, value(len(seen) + 1, 1000))  # rolls, deletes, drops as it goes
        dropped = spool.stats().dropped_events
        assert dropped > 0
        numbers = [int(v[6:12]) for v in seen]
        assert numbers == sorted(numbers) and numbers[-1] == 30
        assert len(numbers) + dropped >= 30  # what was not seen was dropped, never skipped


def test_survives_a_clean_restart(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(120):
            spool.append(b"k", value(i), {"i": i})
        spool.ack(47)
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert spool.events == 73
        records = spool.peek(200)
        assert [r.meta["i"] for r in records] == list(range(47, 120))
        spool.append(b"k", value(120), {"i": 120})
        assert spool.peek(200)[-1].meta == {"i": 120}


def test_survives_a_crash_without_close(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), MAX, SEGMENT)
    for i in range(60):
        spool.append(None, value(i))
    spool.ack(10)
    crash(spool)
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        # Every append reached the file before append() returned; the ack cursor too.
        assert values(spool) == [value(i) for i in range(10, 60)]


def test_lost_cursor_resends_rather_than_skips(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(10):
            spool.append(None, value(i))
        spool.ack(4)
    (tmp_path / "cursor").write_bytes(b"{not json")
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert values(spool) == [value(i) for i in range(10)]


def test_cursor_off_a_record_boundary_resends_that_record(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(5):
            spool.append(None, value(i))
        third = spool.peek(3)[2]
        seq = third.segment
    (tmp_path / "cursor").write_text(f'{{"segment": {seq}, "offset": {third.offset + 3}}}')
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert values(spool) == [value(i) for i in (2, 3, 4)]


@pytest.mark.parametrize("cut", [1, 5, 8, 50, 107])
def test_torn_last_record_is_truncated_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(3):
            spool.append(b"key", value(i))
        last = spool.peek(3)[2]
    [segment] = segments(tmp_path)
    size = segment.stat().st_size
    assert size == last.end
    os.truncate(segment, size - cut)  # the write of record 2 was torn by a crash
    with (
        caplog.at_level(logging.WARNING, logger="oomstream.spool"),
        Spool(str(tmp_path), MAX, SEGMENT) as spool,
    ):
        assert values(spool) == [value(0), value(1)]
        stats = spool.stats()
        assert stats.torn_records == 1
        assert stats.torn_bytes == last.end - last.offset - cut
        spool.append(b"key", value(3))
    assert "torn" in caplog.text
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert values(spool) == [value(0), value(1), value(3)]
        assert spool.stats().torn_records == 0


def test_corrupt_record_crc_is_detected(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        for i in range(3):
            spool.append(None, value(i))
        last = spool.peek(3)[2]
    [segment] = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[last.end - 2] ^= 0xFF  # a flipped bit inside the last record's value
    segment.write_bytes(bytes(data))
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert values(spool) == [value(0), value(1)]
        assert spool.stats().torn_records == 1
    assert segment.stat().st_size == last.offset


def test_garbage_tail_and_empty_or_foreign_segments(tmp_path: Path) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        spool.append(None, value(0))
    [segment] = segments(tmp_path)
    with open(segment, "ab") as handle:
        handle.write(b"\x07\x00")  # a header cut short
    (tmp_path / "segment-00000000000000000099.spool").write_bytes(MAGIC[:3])  # crashed at creation
    (tmp_path / "segment-00000000000000000100.spool").write_bytes(b"not a spool segment at all")
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert values(spool) == [value(0)]
        assert spool.stats().torn_records == 2
        spool.append(None, value(1))
        assert values(spool) == [value(0), value(1)]
    assert (tmp_path / "segment-00000000000000000100.spool.corrupt").exists()
    assert not (tmp_path / "segment-00000000000000000099.spool").exists()


def test_overflow_drops_the_oldest_with_counts_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    max_bytes = 4 * SEGMENT
    with (
        caplog.at_level(logging.WARNING, logger="oomstream.spool"),
        Spool(str(tmp_path), max_bytes, SEGMENT) as spool,
    ):
        for i in range(400):
            spool.append(None, value(i, 300))
            assert spool.total_bytes <= max_bytes
        stats = spool.stats()
        kept = values(spool)
        assert stats.dropped_events > 0
        assert stats.dropped_events + stats.events == 400
        assert len(kept) == stats.events
        # The newest survive, in order, with no holes.
        assert kept == [value(i, 300) for i in range(400 - len(kept), 400)]
        assert stats.dropped_segments >= 1
    assert "spool full" in caplog.text and "dropped the oldest segment" in caplog.text


def test_overflow_with_one_segment_rolls_and_drops_it(tmp_path: Path) -> None:
    # Records too large for two per segment: the active segment is also the oldest.
    with Spool(str(tmp_path), 2 * SEGMENT, SEGMENT) as spool:
        for i in range(6):
            spool.append(None, value(i, 3000))
        assert values(spool)[-1] == value(5, 3000)
        assert spool.stats().dropped_events == 6 - spool.events
        assert spool.total_bytes <= 2 * SEGMENT


def test_ack_through_a_dropped_record_is_a_no_op(tmp_path: Path) -> None:
    with Spool(str(tmp_path), 2 * SEGMENT, SEGMENT) as spool:
        spool.append(None, value(0, 1500))
        peeked = spool.peek(1)[0]
        for i in range(1, 10):
            spool.append(None, value(i, 1500))
        assert spool.dropped_events > 0
        before = values(spool)
        assert spool.ack_through(peeked) == 0
        assert values(spool) == before


def test_acked_events_are_not_counted_as_dropped(tmp_path: Path) -> None:
    with Spool(str(tmp_path), 2 * SEGMENT, SEGMENT) as spool:
        for i in range(30):
            spool.append(None, value(i, 500))
            spool.ack(1)
        assert spool.stats().dropped_events == 0
        assert spool.events == 0


def test_record_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    with Spool(str(tmp_path), 2 * SEGMENT, SEGMENT) as spool:
        spool.append(None, value(0))
        with pytest.raises(SpoolRecordTooLarge):
            spool.append(None, b"x" * (2 * SEGMENT))
        assert spool.stats().rejected_events == 1
        assert values(spool) == [value(0)]
        # Larger than a segment but within max_bytes is fine (it gets a segment of its own).
        spool.append(None, b"y" * (SEGMENT + 100))
        assert values(spool)[-1] == b"y" * (SEGMENT + 100)


def test_parameters_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="segment_bytes"):
        Spool(str(tmp_path), MAX, 100)
    with pytest.raises(SpoolError, match="2 x segment_bytes"):
        Spool(str(tmp_path), SEGMENT, SEGMENT)


def test_one_process_per_directory(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), MAX, SEGMENT)
    with pytest.raises(SpoolError, match="in use by another oomstream process"):
        Spool(str(tmp_path), MAX, SEGMENT)
    spool.close()
    Spool(str(tmp_path), MAX, SEGMENT).close()


def test_closed_spool_refuses_work(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), MAX, SEGMENT)
    spool.close()
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.append(None, b"x")


def test_flush_fsyncs_segment_and_cursor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        spool.append(None, b"x")
        synced: list[str] = []
        real_fsync = os.fsync

        def spy(fd: int) -> None:
            synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", spy)
        spool.append(None, b"y")
        assert synced == []  # appends are not fsynced (see the module doc)
        spool.flush()
        assert any(name.startswith("segment-") for name in synced)
        assert any(name.endswith(".tmp") for name in synced)  # the cursor, written atomically
        assert tmp_path.name in synced  # and the directory


def test_write_failure_leaves_the_segment_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        spool.append(None, value(0))
        real_write = os.write

        def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
            monkeypatch.setattr(os, "write", failing)
            return real_write(fd, bytes(data)[: len(data) // 2])

        def failing(fd: int, data: bytes | memoryview) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_enospc)
        with pytest.raises(OSError, match="No space"):
            spool.append(None, value(1))
        monkeypatch.undo()
        spool.append(None, value(2))
        assert values(spool) == [value(0), value(2)]
    with Spool(str(tmp_path), MAX, SEGMENT) as spool:
        assert values(spool) == [value(0), value(2)]
        assert spool.stats().torn_records == 0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 900)),
        st.tuples(st.just("ack"), st.integers(0, 7)),
        st.tuples(st.just("restart"), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_behaves_like_a_fifo_across_restarts(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    """Without overflow, the spool is a FIFO that a restart (clean or crashed) does not change."""
    directory = str(tmp_path_factory.mktemp("spool"))
    model: deque[bytes] = deque()
    spool = Spool(directory, MAX, SEGMENT)
    counter = 0
    try:
        for op, arg in ops:
            if op == "append":
                data = value(counter, arg)
                counter += 1
                spool.append(None, data)
                model.append(data)
            elif op == "ack":
                acked = spool.ack(arg)
                assert acked == min(arg, len(model))
                for _ in range(acked):
                    model.popleft()
            else:
                if arg:
                    spool.close()
                else:
                    crash(spool)
                spool = Spool(directory, MAX, SEGMENT)
            assert spool.events == len(model)
        assert values(spool) == list(model)
    finally:
        spool.close()
