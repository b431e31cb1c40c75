"""Tail ``/dev/kmsg`` from "now": capture exactly the raw records a test produced."""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["KmsgRecord", "KmsgTail", "parse_kmsg_record", "unescape_kmsg"]

_HEADER = re.compile(rb"^(\d+),(\d+),(-?\d+),([^;,]*)((?:,[^;]*)?);")
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")

# One record is at most a few KiB even fully \x-escaped; the kernel returns EINVAL if the
# buffer is too small for the next record, so be generous.
_READ_SIZE = 1 << 16


def unescape_kmsg(text: bytes) -> bytes:
    r"""Undo /dev/kmsg's escaping: every byte < 0x20, >= 0x7f and ``\`` is written as ``\xNN``."""
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text)


@dataclass(frozen=True)
class KmsgRecord:
    r"""One record as returned by a single ``read(2)`` on ``/dev/kmsg``.

    ``raw`` is exactly what the kernel returned: ``prio,seq,usec,flags[,more];message\n``
    followed by zero or more continuation lines `` KEY=value\n`` (device dictionary).
    """

    raw: bytes
    prio: int
    seq: int
    usec: int
    flags: str
    message: bytes  # still \x-escaped, without the trailing newline
    dictionary: tuple[tuple[str, str], ...]

    @property
    def facility(self) -> int:
        return self.prio >> 3

    @property
    def level(self) -> int:
        return self.prio & 7

    @property
    def continuation(self) -> bool:
        """True for a ``c`` flag (fragment continued by a later record; rare since 4.x)."""
        return "c" in self.flags

    @property
    def text(self) -> bytes:
        """The message with kmsg escaping undone (what the kernel actually printed)."""
        return unescape_kmsg(self.message)


def parse_kmsg_record(raw: bytes) -> KmsgRecord:
    """Parse one raw ``/dev/kmsg`` record (see :class:`KmsgRecord`)."""
    first, _, rest = raw.partition(b"\n")
    m = _HEADER.match(first)
    if not m:
        raise ValueError(f"not a /dev/kmsg record: {raw[:80]!r}")
    dictionary: list[tuple[str, str]] = []
    for line in rest.split(b"\n"):
        if line.startswith(b" "):
            key, _, value = line[1:].partition(b"=")
            dictionary.append((key.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
    return KmsgRecord(
        raw=raw,
        prio=int(m.group(1)),
        seq=int(m.group(2)),
        usec=int(m.group(3)),
        flags=m.group(4).decode("ascii", "replace"),
        message=first[m.end() :],
        dictionary=tuple(dictionary),
    )


class KmsgTail:
    """Non-blocking reader of ``/dev/kmsg`` positioned at the end of the buffer on creation.

    Create it *before* triggering a kill, then call :meth:`read_new` (or :meth:`wait_for`) to
    get the records logged since. ``EPIPE`` (the ring buffer overwrote records we had not read
    yet) is counted in :attr:`lost` and reading continues at the oldest available record.

    >>> with KmsgTail() as tail:                                 # doctest: +SKIP
    ...     run_oom(cg)
    ...     recs = tail.wait_for(lambda r: b"Killed process" in r.message)
    """

    def __init__(self, path: str = "/dev/kmsg", *, from_start: bool = False) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not from_start:
            os.lseek(self._fd, 0, os.SEEK_END)
        self.lost = 0  # number of EPIPE events
        self.records: list[KmsgRecord] = []  # everything read so far, in order

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> KmsgTail:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def read_raw(self) -> list[bytes]:
        """Read every record available right now, as raw bytes, until ``EAGAIN``."""
        out: list[bytes] = []
        while True:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    self.lost += 1
                    continue
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                return out
            out.append(chunk)

    def read_new(self) -> list[KmsgRecord]:
        """Read and parse every record available now; they are also appended to :attr:`records`."""
        recs = [parse_kmsg_record(raw) for raw in self.read_raw()]
        self.records.extend(recs)
        return recs

    def wait_for(
        self,
        predicate: Callable[[KmsgRecord], bool],
        *,
        count: int = 1,
        timeout: float = 10.0,
        settle: float = 0.2,
    ) -> list[KmsgRecord]:
        """Read until ``count`` records matching ``predicate`` were seen (or ``timeout``).

        Keeps reading for ``settle`` seconds after the last match so trailing lines (e.g. the
        ``oom_reaper`` line) are included. Returns all records read during the call.
        """
        got: list[KmsgRecord] = []
        matches = 0
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while True:
            new = self.read_new()
            got.extend(new)
            matches += sum(1 for r in new if predicate(r))
            now = time.monotonic()
            if matches >= count and settle_until is None:
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                return got
            if now >= deadline:
                return got
            time.sleep(0.02)
