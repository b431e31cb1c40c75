"""A bounded, durable on-disk FIFO of serialized events, used while the sink cannot deliver.

Layout of the spool directory::

    segment-00000000000000000007.spool   oldest live segment
    segment-00000000000000000008.spool   ... newest segment, the only one appended to
    cursor                               {"segment": 7, "offset": 4096}: the first unacknowledged record
    .spool.lock                          flock: one process per spool directory

A segment starts with an 8-byte magic and holds records ``<u32 body length><u32 CRC32 of body><body>``,
body = ``<i32 key length, -1 for no key><u32 meta length><key><meta JSON><value>`` (little endian).

Crash safety
    Every append is one ``write()`` to the segment file, so it survives a crash of the process as
    soon as ``append`` returns (the page cache outlives the process). A crash during the write
    leaves a torn last record: on open every segment is scanned, the first record whose header is
    short, whose length runs past the end of the file or whose CRC fails ends the segment, and the
    file is truncated there (counted in ``torn_records``/``torn_bytes`` and logged).

fsync policy (the trade-off)
    Appends are not fsynced: an fsync costs about a millisecond on SSDs and tens on network disks,
    and the spool fills exactly when the node is in trouble. The segment is fsynced when it is
    rolled and on ``flush()``/``close()``. So a power loss or kernel crash can lose the appends since
    the last flush. Callers that advance a source checkpoint over spooled events MUST call
    ``flush()`` before saving that checkpoint (once per checkpoint, not per event); then nothing is
    lost, because the source rereads whatever the spool did not make durable.
    The cursor is rewritten atomically on every ack but fsynced only on flush/close: after a power
    loss it may go back, which resends a few events (consumers dedupe by ``event_id``), never skips.

Bounds
    ``max_bytes`` bounds the segment files together. An append that would exceed it first deletes
    the OLDEST segment (rolling the active one if it is the only one), counting its unacknowledged
    records in ``dropped_events`` and logging how many were lost: recent OOM kills matter more than
    old ones, and the disk must not fill. A single record larger than ``max_bytes`` is refused
    (``SpoolRecordTooLarge``), never stored. A disk too full for a new segment does not stop the
    spool from opening: the first append that finds room creates it; appends that fail raise
    OSError and are counted (``write_errors``), the caller keeps those events.

Ordering and acknowledgement
    ``peek``/``iterate`` return pending records oldest first; ``ack(n)`` removes the first n pending
    records and ``ack_through(record)`` removes every pending record up to and including one that
    was peeked. Prefer ``ack_through`` when appends can happen between peek and ack: an overflow
    drop in between changes what "the first n" means, while ``ack_through`` on a record that was
    dropped is a harmless no-op.

Synchronous, no threads: each call is a few syscalls, cheap enough for the event loop.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Self

import orjson

from parsers.telemetry import Count, Tally, Telemetry
from streamer.checkpoint import DirectoryLock, atomic_write, fsync_directory

# The spool's tally; exposed through SpoolStats (streamer.metrics SPOOL_FAMILIES), one field a key.
SPOOL_TELEMETRY = Telemetry(
    "spool",
    (
        Count("appended_events", "events written"),
        Count("acked_events", "events acknowledged"),
        Count("dropped_events", "unsent events deleted by overflow"),
        Count("dropped_segments", "segments deleted by overflow"),
        Count("rejected_events", "events larger than max_bytes"),
        Count("torn_records", "torn or corrupt records cut off at open"),
        Count("torn_bytes", "bytes of those"),
        Count("write_errors", "appends that failed"),
    ),
)

log = logging.getLogger("oomstream.spool")

MAGIC = b"OOMSPL\x00\x01"  # format version in the last byte
_HEADER = struct.Struct("<II")  # body length, CRC32(body)
_BODY_HEAD = struct.Struct("<iI")  # key length (-1: None), meta length
_SEGMENT_RE = re.compile(r"^segment-(\d{20})\.spool$")
CURSOR_NAME = "cursor"
LOCK_NAME = ".spool.lock"
MIN_SEGMENT_BYTES = 4096
_MAX_BODY = 0xFFFFFFFF


class SpoolError(Exception):
    """The spool cannot be used (bad parameters, directory locked or unwritable)."""


class SpoolRecordTooLarge(SpoolError, ValueError):
    """One record does not fit into ``max_bytes``; the caller must dead-letter or drop it."""


class SpoolRecord(NamedTuple):
    key: bytes | None
    value: bytes
    meta: dict[str, Any]
    number: int  # order of the record in this process' view of the spool; ack_through() uses it
    segment: int
    offset: int  # where the record starts in its segment
    end: int  # where the next record starts


@dataclass(frozen=True, slots=True)
class SpoolStats:
    bytes: int  # segment files on disk together, acknowledged-but-not-yet-deleted records included
    events: int  # records not yet acknowledged
    segments: int
    appended_events: int  # since this process opened the spool
    acked_events: int
    dropped_events: int  # unacknowledged records deleted by overflow
    dropped_segments: int
    rejected_events: int  # single records larger than max_bytes
    torn_records: int  # torn or corrupt record tails cut off when opening
    torn_bytes: int
    write_errors: int  # appends that failed (disk full, I/O error); the caller keeps the event owed


class _Segment:
    __slots__ = ("first_index", "path", "records", "seq", "size")

    def __init__(self, seq: int, path: str, size: int, records: int, first_index: int) -> None:
        self.seq = seq
        self.path = path
        self.size = size  # bytes of valid content, magic included
        self.records = records
        self.first_index = first_index

    @property
    def end_index(self) -> int:
        return self.first_index + self.records


def _encode(key: bytes | None, value: bytes, meta: Mapping[str, Any]) -> bytes:
    meta_bytes = orjson.dumps(meta) if meta else b""
    body = b"".join(
        (
            _BODY_HEAD.pack(-1 if key is None else len(key), len(meta_bytes)),
            key or b"",
            meta_bytes,
            value,
        )
    )
    if len(body) > _MAX_BODY:
        raise SpoolRecordTooLarge(f"record of {len(body)} bytes exceeds the format limit")
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes) -> tuple[bytes | None, bytes, dict[str, Any]]:
    key_len, meta_len = _BODY_HEAD.unpack_from(body)
    pos = _BODY_HEAD.size
    key: bytes | None = None
    if key_len >= 0:
        key = body[pos : pos + key_len]
        pos += key_len
    meta: dict[str, Any] = orjson.loads(body[pos : pos + meta_len]) if meta_len else {}
    pos += meta_len
    return key, body[pos:], meta


class Spool:
    """A bounded FIFO of ``(key, value, meta)`` records in ``directory`` (see the module doc)."""

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int, *, lock: bool = True) -> None:
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise SpoolError(f"segment_bytes must be >= {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        if max_bytes < 2 * segment_bytes:
            # Overflow deletes a whole segment; with fewer than two, it would empty the spool.
            raise SpoolError(f"max_bytes ({max_bytes}) must be at least 2 x segment_bytes ({segment_bytes})")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: deque[_Segment] = deque()
        self._fd: int | None = None  # append descriptor of the newest segment
        self._head_index = 0  # index of the first unacknowledged record
        self._head_offset = len(MAGIC)  # its offset in the oldest segment
        self._next_index = 0
        self._bytes = 0
        # Every key present from the start: SpoolStats takes them all.
        self._counts: Tally = SPOOL_TELEMETRY.tally((key, 0) for key in SPOOL_TELEMETRY.keys)
        self._first_seq = 0  # the number of the first segment when none exists
        self._closed = False
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as error:
            raise SpoolError(
                f"spool directory {directory!r}: cannot create ({error.strerror or error})"
            ) from None
        self._lock: DirectoryLock | None = None
        if lock:
            self._lock = DirectoryLock(directory, LOCK_NAME, "spool directory")
            try:
                self._lock.acquire()
            except Exception as error:
                raise SpoolError(str(error)) from None
        try:
            self._open_existing()
        except BaseException:
            self.close()
            raise

    # -- public API -------------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def events(self) -> int:
        return self._next_index - self._head_index

    @property
    def dropped_events(self) -> int:
        return self._counts["dropped_events"]

    def __len__(self) -> int:
        return self.events

    def stats(self) -> SpoolStats:
        return SpoolStats(bytes=self._bytes, events=self.events, segments=len(self._segments), **self._counts)

    def append(self, key: bytes | None, value: bytes, meta: Mapping[str, Any] | None = None) -> int:
        """Store one record at the tail; returns its index. Raises OSError when the disk fails."""
        self._check_open()
        record = _encode(key, value, meta or {})
        size = len(record)
        if size + len(MAGIC) > self.max_bytes:
            self._counts["rejected_events"] += 1
            raise SpoolRecordTooLarge(
                f"record of {size} bytes cannot fit into the spool (max_bytes={self.max_bytes})"
            )
        try:
            if self._fd is None:
                self._new_segment(self._next_seq())  # none could be created before (disk full)
            active = self._segments[-1]
            if active.records and active.size + size > self.segment_bytes:
                active = self._roll()
            while self._bytes + size > self.max_bytes:
                self._drop_oldest()
                active = self._segments[-1]
            assert self._fd is not None
            self._write_all(self._fd, record, active)
        except OSError:
            self._counts["write_errors"] += 1
            raise
        active.size += size
        active.records += 1
        self._bytes += size
        index = self._next_index
        self._next_index += 1
        self._counts["appended_events"] += 1
        return index

    def peek(self, n: int = 1) -> list[SpoolRecord]:
        """Up to ``n`` pending records, oldest first, without removing them."""
        out: list[SpoolRecord] = []
        if n <= 0:
            return out
        for record in self.iterate():
            out.append(record)
            if len(out) >= n:
                break
        return out

    def iterate(self) -> Iterator[SpoolRecord]:
        """Every pending record, oldest first (records appended meanwhile are included).

        Do not ack while iterating; collect, then ``ack_through`` the last one handled.
        """
        self._check_open()
        index = self._head_index
        offset = self._head_offset
        seq = self._segments[0].seq if self._segments else -1  # the segment ``offset`` belongs to
        while True:
            # Looked up by index each round, not by list position: an append may roll and delete
            # an acknowledged head segment, or overflow may drop segments, between two yields.
            segment = next((s for s in self._segments if s.end_index > index), None)
            if segment is None:
                return
            if segment.seq != seq:
                seq, index, offset = segment.seq, segment.first_index, len(MAGIC)
            try:
                handle = open(segment.path, "rb")  # noqa: SIM115 - closed below, across yields
            except FileNotFoundError:
                index = segment.end_index
                continue
            try:
                handle.seek(offset)
                while index < segment.end_index:
                    length, _crc = _HEADER.unpack(handle.read(_HEADER.size))
                    key, value, meta = _decode(handle.read(length))
                    end = offset + _HEADER.size + length
                    yield SpoolRecord(key, value, meta, index, segment.seq, offset, end)
                    index += 1
                    offset = end
            finally:
                handle.close()

    def pop(self) -> SpoolRecord | None:
        """Remove and return the oldest pending record (for callers that ack one at a time)."""
        records = self.peek(1)
        if not records:
            return None
        self.ack_through(records[0])
        return records[0]

    def ack(self, n: int = 1) -> int:
        """Remove the ``n`` oldest pending records (fewer if there are fewer); returns how many."""
        if n <= 0:
            return 0
        return self._advance(min(self._head_index + n, self._next_index))

    def ack_through(self, record: SpoolRecord) -> int:
        """Remove every pending record up to and including ``record``; returns how many."""
        if record.number < self._head_index:
            return 0  # acked already, or dropped by overflow
        return self._advance(record.number + 1)

    def flush(self) -> None:
        """Make every append and ack so far durable (fsync segment, cursor, directory)."""
        self._check_open()
        if self._fd is not None:
            os.fsync(self._fd)
        self._write_cursor(durable=True)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._fd is not None and self._segments:
                self.flush()
        finally:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError("spool is closed")

    def _segment_path(self, seq: int) -> str:
        return os.path.join(self.directory, f"segment-{seq:020d}.spool")

    def _open_existing(self) -> None:
        seqs = sorted(
            int(match.group(1)) for name in os.listdir(self.directory) if (match := _SEGMENT_RE.match(name))
        )
        cursor_seq, cursor_offset = self._read_cursor()
        index = 0
        for seq in seqs:
            path = self._segment_path(seq)
            if seq < cursor_seq:
                # Fully acknowledged before a crash that came before its deletion.
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            offsets = self._scan(path)
            if offsets is None:
                continue
            size = offsets.pop()  # the last entry is the end of the valid content
            segment = _Segment(seq, path, size, len(offsets), index)
            if not self._segments:
                acked = 0
                if seq == cursor_seq:
                    # Resume at the last record boundary at or before the cursor: a cursor that is
                    # off a boundary (should not happen) resends one record rather than lose it.
                    acked = bisect.bisect_left(offsets, cursor_offset)
                    if (
                        acked
                        and cursor_offset < size
                        and offsets[min(acked, len(offsets) - 1)] != cursor_offset
                    ):
                        acked -= 1
                segment.first_index = -acked
                self._head_offset = offsets[acked] if acked < len(offsets) else size
                index = segment.first_index
            self._segments.append(segment)
            self._bytes += size
            index += segment.records
        self._next_index = index
        # Never reuse the cursor's segment number: its offset would apply to the new file.
        self._first_seq = max(cursor_seq + 1, 0)
        if self._segments and self._segments[-1].size < self.segment_bytes:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        else:
            try:
                self._new_segment(self._next_seq())
            except OSError as error:
                # A full disk must not stop the service: the first append tries again.
                log.error(
                    "spool %s: cannot create a segment (%s); events that fail delivery cannot be "
                    "spooled until there is room",
                    self.directory,
                    error.strerror or error,
                )
        self._delete_acked_segments()
        if self.events:
            log.info(
                "spool %s holds %d unsent event(s) in %d segment(s), %d bytes",
                self.directory,
                self.events,
                len(self._segments),
                self._bytes,
            )

    def _scan(self, path: str) -> list[int] | None:
        """Record start offsets of a segment, plus its valid end; truncates a torn tail."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            log.error("spool segment %s unreadable (%s); skipped", path, error.strerror or error)
            return None
        if not data.startswith(MAGIC):
            if len(data) < len(MAGIC) and MAGIC.startswith(data):
                # Crashed right after creating it: nothing was lost.
                with contextlib.suppress(OSError):
                    os.unlink(path)
                return None
            aside = path + ".corrupt"
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self._counts["torn_records"] += 1
            self._counts["torn_bytes"] += len(data)
            log.error("spool segment %s has no spool header; moved to %s, its events are lost", path, aside)
            return None
        offsets: list[int] = []
        pos = len(MAGIC)
        total = len(data)
        while pos < total:
            problem = None
            if total - pos < _HEADER.size:
                problem = "short record header"
            else:
                length, crc = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if length < _BODY_HEAD.size or end > total:
                    problem = "record runs past the end of the file"
                elif zlib.crc32(data[pos + _HEADER.size : end]) != crc:
                    problem = "CRC mismatch"
            if problem is not None:
                self._counts["torn_records"] += 1
                self._counts["torn_bytes"] += total - pos
                log.warning(
                    "spool segment %s: %s at offset %d; cut %d byte(s) (a write torn by a crash)",
                    path,
                    problem,
                    pos,
                    total - pos,
                )
                with open(path, "r+b") as handle:
                    handle.truncate(pos)
                    os.fsync(handle.fileno())
                break
            offsets.append(pos)
            pos = end
        offsets.append(pos)
        return offsets

    def _read_cursor(self) -> tuple[int, int]:
        path = os.path.join(self.directory, CURSOR_NAME)
        try:
            with open(path, "rb") as handle:
                cursor = orjson.loads(handle.read())
            seq, offset = int(cursor["segment"]), int(cursor["offset"])
        except FileNotFoundError:
            return -1, 0
        except (OSError, ValueError, KeyError, TypeError) as error:
            # Resending everything is the safe direction; losing the cursor never loses events.
            log.warning("spool cursor %s unreadable (%s); resending the whole spool", path, error)
            return -1, 0
        return seq, offset

    def _write_cursor(self, *, durable: bool) -> None:
        if not self._segments:
            return
        cursor = {"segment": self._segments[0].seq, "offset": self._head_offset}
        atomic_write(os.path.join(self.directory, CURSOR_NAME), orjson.dumps(cursor), durable=durable)

    def _next_seq(self) -> int:
        return self._segments[-1].seq + 1 if self._segments else self._first_seq

    def _new_segment(self, seq: int) -> _Segment:
        path = self._segment_path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        segment = _Segment(seq, path, 0, 0, self._next_index)
        try:
            self._write_all(fd, MAGIC, segment)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        segment.size = len(MAGIC)
        if not self._segments:
            self._head_offset = len(MAGIC)
        self._segments.append(segment)
        self._bytes += len(MAGIC)
        self._fd = fd
        fsync_directory(self.directory)
        return segment

    def _roll(self) -> _Segment:
        if self._fd is not None:
            os.fsync(self._fd)  # a rolled segment is complete: make it durable once
            os.close(self._fd)
            self._fd = None
        segment = self._new_segment(self._next_seq())
        self._delete_acked_segments()
        return segment

    def _write_all(self, fd: int, data: bytes, segment: _Segment) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # Cut a partial record off now, so the segment stays readable (ENOSPC, EIO).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, segment.size)
            raise

    def _advance(self, target_index: int) -> int:
        """Acknowledge records up to (not including) ``target_index``."""
        self._check_open()
        count = 0
        while self._head_index < target_index:
            head = self._segments[0]
            take = min(target_index, head.end_index) - self._head_index
            if take > 0:
                self._head_offset = self._offset_after(head, self._head_offset, take)
                self._head_index += take
                count += take
            if self._head_index >= head.end_index and len(self._segments) > 1:
                self._remove_head()
            elif take <= 0:
                break
        if count:
            self._counts["acked_events"] += count
            self._write_cursor(durable=False)
        return count

    def _offset_after(self, segment: _Segment, offset: int, records: int) -> int:
        if segment.end_index - self._head_index == records:
            return segment.size  # all remaining: no need to read headers
        with open(segment.path, "rb") as handle:
            for _ in range(records):
                handle.seek(offset)
                length, _crc = _HEADER.unpack(handle.read(_HEADER.size))
                offset += _HEADER.size + length
        return offset

    def _remove_head(self) -> None:
        head = self._segments.popleft()
        self._bytes -= head.size
        with contextlib.suppress(FileNotFoundError):
            os.unlink(head.path)
        nxt = self._segments[0]
        self._head_index = max(self._head_index, nxt.first_index)
        self._head_offset = len(MAGIC)

    def _delete_acked_segments(self) -> None:
        removed = False
        while len(self._segments) > 1 and self._head_index >= self._segments[0].end_index:
            self._remove_head()
            removed = True
        if removed:
            self._write_cursor(durable=False)

    def _drop_oldest(self) -> None:
        if len(self._segments) == 1:
            self._roll()
            if len(self._segments) == 1:  # the old one was fully acked and is gone already
                return
        head = self._segments[0]
        lost = head.end_index - self._head_index
        self._counts["dropped_events"] += lost
        self._counts["dropped_segments"] += 1
        self._head_index = head.end_index
        self._remove_head()
        self._write_cursor(durable=False)
        log.warning(
            "spool full (max_bytes=%d): dropped the oldest segment with %d unsent event(s); "
            "%d dropped since start",
            self.max_bytes,
            lost,
            self._counts["dropped_events"],
            extra={"dropped_events": lost},
        )
