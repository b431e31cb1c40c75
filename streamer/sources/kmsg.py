"""``/dev/kmsg`` source: the kernel's own record stream, one record per ``read(2)``.

The ring buffer is small (128 KiB here, often less) and a global OOM report can be 100-300 KB,
so the reader never waits on the consumer: a ``loop.add_reader`` callback drains the device into
a bounded in-memory buffer, and ``records()`` frames from that buffer at the consumer's pace. If
the buffer still overflows, the oldest buffered records are dropped, counted and logged.

Loss accounting (``counts``):

- ``lost``: records known to be missing: sequence-number gaps (records the kernel overwrote
  before we read them, announced by ``EPIPE`` or seen while we were not running) plus records
  dropped from our own buffer because the consumer was too slow.
- ``gaps`` (gap episodes), ``epipe`` (EPIPE returns), ``dropped_queue_full``.

Positions: ``SourcePosition(kind="kmsg", seq=<seq>)``. kmsg sequence numbers restart at 0 on
every boot, so a seq means nothing without its boot: ``record.boot_id`` carries the boot, and the
source's checkpoint (``checkpoint_data``: ``{"kind": "kmsg", "seq": N, "boot_id": B}``, under the
key ``"kmsg"``) holds both. Boot ids are normalised to journald's form (32 lowercase hex digits, no
dashes) so that the same kill read through kmsg or journald gets the same event id.

Resuming from a checkpoint works like systemd's ``journald-kmsg.c``: same boot, skip records
with ``seq <= checkpoint seq``; another boot (or unknown), start from the oldest retained record.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from parsers.framing import Framer
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry
from streamer.config import OptionError, option_help
from streamer.registry import BuildContext, Component
from streamer.sources.base import SOURCE_TELEMETRY, FramedSource, SourceError

KMSG_TELEMETRY = SOURCE_TELEMETRY + Telemetry(
    "kmsg",
    (
        Count("malformed", "records without a valid kmsg prefix"),
        Count("epipe", "EPIPE reads: the ring buffer overwrote records before they were read"),
        Count("skipped_checkpoint", "records at or before the checkpoint, passed over"),
        Count("checkpoint_mismatch", "checkpoints that did not fit the ring buffer (read from the start)"),
        Count("checkpoint_other_boot", "checkpoints of another boot (read from the start)"),
        Count("dropped_queue_full", "records dropped from the full read buffer", bound="kmsg_buffer"),
    ),
)

log = logging.getLogger("oomstream.sources.kmsg")

KmsgStart = Literal["oldest", "end"] | SourcePosition

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
# A record is at most CONSOLE_EXT_LOG_MAX (8 KiB) including escapes and dictionary; a smaller
# buffer makes read() fail with EINVAL, so be generous.
READ_SIZE = 16384
# Records read per readiness callback before yielding to the loop (the fd stays readable, so
# the callback runs again on the next loop iteration): bounds one callback's latency.
READS_PER_WAKEUP = 2048
_LOG_INTERVAL = 10.0  # seconds between repeated loss log lines


def normalize_boot_id(value: str) -> str:
    """``0f6f30e8-cb7d-...`` (procfs) and ``0f6f30e8cb7d...`` (journald) both become the latter."""
    return value.strip().replace("-", "").lower()


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    with open(path, encoding="ascii") as fh:
        return normalize_boot_id(fh.read())


def realtime_minus_monotonic() -> float:
    """Unix time of CLOCK_MONOTONIC zero, i.e. the "boot time" that kmsg stamps are relative to.

    CLOCK_MONOTONIC, like the printk clock, stops during suspend, so REALTIME - MONOTONIC moves
    forward by each suspend's length; CLOCK_BOOTTIME would not (util-linux#4066). The two reads
    are bracketed by a second MONOTONIC read and the midpoint taken, which keeps the error to the
    syscall latency.
    """
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    real = time.clock_gettime(time.CLOCK_REALTIME)
    after = time.clock_gettime(time.CLOCK_MONOTONIC)
    return real - (before + after) / 2


class KmsgSource(FramedSource):
    """Follow ``/dev/kmsg`` (non-blocking, ``loop.add_reader``), yield framed kernel records.

    ``start``: ``"oldest"`` (default: the oldest record still in the ring, the device's default
    open position, which ignores ``dmesg -C``), ``"end"`` (only records logged from now on) or a
    checkpoint ``SourcePosition(kind="kmsg", seq=N)`` of boot ``checkpoint_boot_id`` (older
    checkpoints carried the boot id in ``cursor``; that is still read).

    ``boot_time_unix`` fixes the Unix time of kernel time 0 (tests, replays); by default it is
    re-derived from REALTIME - MONOTONIC every ``boot_time_refresh`` seconds, so clock steps and
    suspends are followed instead of freezing the value read at start (NPD#479). Records logged
    before a suspend and read after it (backlog at start) get the post-suspend offset, i.e. a wall
    time too late by the suspend's length: kmsg carries nothing to correct that.

    ``queue_records`` / ``queue_bytes`` bound the buffer between the device reader and the
    consumer; on overflow the oldest buffered record is dropped and counted as ``lost``.
    """

    def __init__(
        self,
        path: str = "/dev/kmsg",
        *,
        start: KmsgStart = "oldest",
        boot_id: str | None = None,
        checkpoint_boot_id: str | None = None,
        boot_time_unix: float | None = None,
        boot_time_refresh: float = 2.0,
        queue_records: int = 50_000,
        queue_bytes: int = 32 << 20,
        host: str | None = None,
        name: str = "kmsg",
    ) -> None:
        if isinstance(start, str) and start not in ("oldest", "end"):
            raise ValueError(f"start must be 'oldest', 'end' or a SourcePosition, not {start!r}")
        if isinstance(start, SourcePosition) and start.kind != "kmsg":
            raise ValueError(f"a kmsg source cannot start from a {start.kind!r} position")
        if queue_records < 1 or queue_bytes < READ_SIZE:
            raise ValueError("queue_records must be >= 1 and queue_bytes >= one read buffer")
        self.name = name
        self.checkpoint_key = name
        self.path = path
        self.counts: Tally = KMSG_TELEMETRY.tally()
        if boot_id is None:
            try:
                boot_id = read_boot_id()
            except OSError as exc:
                raise SourceError(f"cannot read the boot id from {BOOT_ID_PATH}: {exc}") from exc
        self.boot_id = normalize_boot_id(boot_id)
        self._start = start
        self._checkpoint_boot_id = checkpoint_boot_id
        self._fixed_boot_time = boot_time_unix
        self._boot_time_refresh = boot_time_refresh
        self._boot_time = boot_time_unix if boot_time_unix is not None else realtime_minus_monotonic()
        self._boot_time_read_at = time.monotonic()
        self._queue_records = queue_records
        self._queue_bytes = queue_bytes
        self._framer = Framer("kmsg", source_kind="kmsg", host=host, boot_id=self.boot_id)

        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer: deque[bytes] = deque()
        self._buffer_bytes = 0
        self._wakeup = asyncio.Event()
        self._closed = False
        self._error: SourceError | None = None
        self._skip_upto: int | None = None  # checkpoint seq of this boot: skip seq <= this
        self._last_seq: int | None = None  # last seq read from the device (gap detection)
        self._epipe_pending = False
        self._last_loss_log = 0.0
        self._unlogged_drops = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.start()
        return self

    def start(self) -> None:
        """Open the device and start reading into the buffer (idempotent; needs a running loop)."""
        if self._fd is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        fd = self._open_fd()
        try:
            self._position_fd(fd)
            loop.add_reader(fd, self._on_readable)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._loop = loop
        # Records may already be waiting: read them now rather than on the next poll.
        loop.call_soon(self._on_readable)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_fd()
        self._flush_loss_log(force=True)
        self._wakeup.set()

    def _release_fd(self) -> None:
        """Stop watching and close the device (a no-op when it is not open)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(fd)
            os.close(fd)

    def start_position(self) -> SourcePosition | None:
        return self._start if isinstance(self._start, SourcePosition) else None

    def checkpoint_data(self, position: SourcePosition) -> dict[str, Any]:
        """What to save so that reading resumes after ``position``: its seq and this boot."""
        return {"kind": "kmsg", "seq": position.seq, "boot_id": self.boot_id}

    @staticmethod
    def resume_point(data: dict[str, Any] | None) -> tuple[SourcePosition | None, str | None]:
        """A saved checkpoint as (position, its boot id); (None, None) without one."""
        if not data or data.get("kind", "kmsg") != "kmsg":
            return None, None
        seq = data.get("seq")
        boot = data.get("boot_id") or data.get("cursor")  # "cursor": checkpoints before issue 11
        position = SourcePosition(kind="kmsg", seq=seq if isinstance(seq, int) else None)
        return position, boot if isinstance(boot, str) else None

    # -- device ----------------------------------------------------------------------------------
    def _open_fd(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.path} does not exist (no /dev/kmsg in this container?)") from exc
        except PermissionError as exc:
            raise SourceError(
                f"cannot open {self.path}: {exc.strerror}; reading the kernel log needs root or "
                "CAP_SYSLOG (kernel.dmesg_restrict=1) and the device mounted into the container"
            ) from exc
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc}") from exc

    def _read_record(self, fd: int) -> bytes:
        """One read() returns exactly one record (tests override this to inject errors)."""
        return os.read(fd, READ_SIZE)

    def _position_fd(self, fd: int) -> None:
        start = self._start
        if start == "end":
            os.lseek(fd, 0, os.SEEK_END)
            return
        if not isinstance(start, SourcePosition):
            return  # "oldest": the device opens at the first retained record
        boot = start.cursor or self._checkpoint_boot_id
        if start.seq is None or boot is None:
            self.counts["checkpoint_mismatch"] += 1
            log.warning(
                "%s: checkpoint %s has no %s; reading from the oldest retained record "
                "(already published records may be repeated)",
                self.name, start.to_json(), "seq" if start.seq is None else "boot id",
            )  # fmt: skip
            return
        if normalize_boot_id(boot) != self.boot_id:
            # Another boot's seq numbers say nothing about this boot's: everything is new.
            self.counts["checkpoint_other_boot"] += 1
            log.info(
                "%s: checkpoint is from boot %s, this is boot %s: reading from the oldest record",
                self.name, normalize_boot_id(boot), self.boot_id,
            )  # fmt: skip
            return
        self._skip_upto = start.seq
        self._last_seq = start.seq

    def _on_readable(self) -> None:
        """Drain what the device has right now into the buffer; never blocks, never awaits."""
        fd = self._fd
        if fd is None:
            return
        got = False
        for _ in range(READS_PER_WAKEUP):
            try:
                data = self._read_record(fd)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except BrokenPipeError:
                # Records were overwritten before we read them; the next read returns the oldest
                # one still there, and its seq tells how many were lost.
                self.counts["epipe"] += 1
                self._epipe_pending = True
                continue
            except OSError as exc:
                self._fail(exc)
                return
            if not data:
                break
            self._accept(data)
            got = True
        if got:
            self._wakeup.set()

    def _accept(self, data: bytes) -> None:
        self.counts["lines"] += 1  # raw records read (the metrics "lines" tally)
        seq = _seq_of(data)
        if seq is None:
            self.counts["malformed"] += 1
            log.warning("%s: malformed record %r", self.name, data[:120])
            return
        if self._skip_upto is not None:
            if seq <= self._skip_upto:
                self.counts["skipped_checkpoint"] += 1
                return
            self._skip_upto = None
        last = self._last_seq
        if last is not None and seq > last + 1:
            missing = seq - last - 1
            self.counts["lost"] += missing
            self.counts["gaps"] += 1
            why = "overwritten in the ring buffer before they were read" + (
                "" if self._epipe_pending else " (or while oomstream was not running)"
            )
            log.warning(
                "%s: lost %d kernel records (seq %d..%d): %s", self.name, missing, last + 1, seq - 1, why
            )
        elif self._epipe_pending and last is None:
            log.warning("%s: records were overwritten before the first read (count unknown)", self.name)
        self._epipe_pending = False
        self._last_seq = seq
        buffer = self._buffer
        buffer.append(data)
        self._buffer_bytes += len(data)
        while len(buffer) > self._queue_records or self._buffer_bytes > self._queue_bytes:
            dropped = buffer.popleft()
            self._buffer_bytes -= len(dropped)
            self.counts["lost"] += 1
            self.counts["dropped_queue_full"] += 1
            self._unlogged_drops += 1
        if self._unlogged_drops:
            self._flush_loss_log()

    def _flush_loss_log(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._unlogged_drops and (force or now - self._last_loss_log >= _LOG_INTERVAL):
            log.warning(
                "%s: consumer too slow, dropped the %d oldest buffered records "
                "(buffer: %d records / %d bytes)",
                self.name, self._unlogged_drops, self._queue_records, self._queue_bytes,
            )  # fmt: skip
            self._unlogged_drops = 0
            self._last_loss_log = now

    def _fail(self, exc: OSError) -> None:
        if exc.errno == errno.EINVAL:
            message = f"read from {self.path} failed: record larger than the {READ_SIZE}-byte buffer"
        else:
            message = f"read from {self.path} failed: {exc}"
        self._error = SourceError(message)
        self._release_fd()
        self._wakeup.set()

    # -- consumer ----------------------------------------------------------------------------------
    def _wall_boot_time(self) -> float:
        if self._fixed_boot_time is not None:
            return self._fixed_boot_time
        now = time.monotonic()
        if now - self._boot_time_read_at >= self._boot_time_refresh:
            self._boot_time = realtime_minus_monotonic()
            self._boot_time_read_at = now
        return self._boot_time

    def _frame(self, data: bytes) -> KernelRecord | None:
        record = self._framer.frame_kmsg_record(data, boot_id=self.boot_id)
        if record is None:
            self.counts["malformed"] += 1
            return None
        seq = record.position.seq if record.position is not None else None
        kernel_time = record.kernel_time
        wall = self._wall_boot_time() + kernel_time if kernel_time is not None else None
        if not record.trusted:
            # Written by user space (facility forced to LOG_USER): framed, never taken for the kernel.
            self.counts["untrusted"] += 1
        self.counts["records"] += 1
        return record._replace(
            wall_time=wall,
            time_source="kmsg_boottime" if wall is not None else None,
            boot_id=self.boot_id,
            position=SourcePosition(kind="kmsg", seq=seq),
        )

    async def records(self) -> AsyncIterator[KernelRecord]:
        """Yield records in kernel order until ``aclose()``; raises SourceError on device failure."""
        self.start()
        buffer = self._buffer
        while True:
            while buffer and not self._closed:
                data = buffer.popleft()
                self._buffer_bytes -= len(data)
                record = self._frame(data)
                if record is not None:
                    yield record
            if self._closed:
                return
            if self._error is not None:
                raise self._error
            self._wakeup.clear()
            await self._wakeup.wait()

    @property
    def buffered(self) -> int:
        """Records read from the device and not yet taken by the consumer."""
        return len(self._buffer)


def _seq_of(data: bytes) -> int | None:
    """The sequence number from a record header ``prio,seq,usec,flags;`` without full parsing."""
    first = data.find(b",", 0, 32)
    if first < 0:
        return None
    second = data.find(b",", first + 1, first + 24)
    if second < 0:
        return None
    try:
        return int(data[first + 1 : second])
    except ValueError:
        return None


# -- the component: [sources.kmsg] ---------------------------------------------------------------

KmsgStartOption = Literal["checkpoint", "oldest", "end"]


@dataclass(frozen=True, slots=True)
class KmsgOptions:
    path: str = field(default="/dev/kmsg", metadata=option_help("kernel log device"))
    start: KmsgStartOption = field(
        default="checkpoint",
        metadata=option_help("where reading starts: checkpoint (resume; oldest when none), oldest, end"),
    )

    def __post_init__(self) -> None:
        if not self.path:
            raise OptionError("path", "must not be empty")


def kmsg_source(options: KmsgOptions, checkpoint: dict[str, Any] | None, *, host: str | None) -> KmsgSource:
    """The kmsg source of ``options``, resuming from ``checkpoint`` when ``start = checkpoint``
    (the one place a KmsgSource is made from configuration: ``auto`` delegates here too)."""
    if options.start == "checkpoint":
        position, boot_id = KmsgSource.resume_point(checkpoint)
        if position is not None:
            return KmsgSource(options.path, start=position, checkpoint_boot_id=boot_id, host=host)
        return KmsgSource(options.path, start="oldest", host=host)
    return KmsgSource(options.path, start=options.start, host=host)


async def build(options: KmsgOptions, context: BuildContext) -> list[KmsgSource]:
    return [kmsg_source(options, context.checkpoints.load("kmsg"), host=context.node_name)]


COMPONENT = Component(options=KmsgOptions, build=build, help="the kernel's /dev/kmsg device")
