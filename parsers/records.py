"""Framed kernel log records: what every input format is reduced to before OOM assembly.

Records are immutable NamedTuples rather than frozen dataclasses: one is built for every framed
line, and a frozen dataclass costs three times as much to construct (about 3 µs against 1 µs
here), which alone would eat a third of the parse budget inside OOM reports.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SourcePosition(NamedTuple):
    """Where a record came from, precise enough to resume reading after it.

    Only the fields that the source kind defines are set: kmsg has ``seq``, journald has
    ``cursor``, files and stdin have ``offset`` (byte offset of the line start) and, for files,
    ``path``/``device``/``inode`` so a rotated file is not mistaken for its successor.
    """

    kind: str
    offset: int | None = None
    seq: int | None = None
    cursor: str | None = None
    path: str | None = None
    device: int | None = None
    inode: int | None = None

    @classmethod
    def from_json(cls, kind: str, data: dict[str, Any]) -> SourcePosition:
        """The inverse of ``to_json`` (events and checkpoints carry positions as JSON)."""
        return cls(
            kind,
            data.get("offset"),
            data.get("seq"),
            data.get("cursor"),
            data.get("path"),
            data.get("device"),
            data.get("inode"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("offset", "seq", "cursor", "path", "device", "inode"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class KernelRecord(NamedTuple):
    """One kernel log record, stripped of its transport wrapper.

    ``message`` may hold several lines when the kernel printed a newline inside one record
    (old memcg stat dumps do); the assembler splits it.
    """

    message: str
    format: str
    kernel_time: float | None = None  # seconds since boot (CLOCK_MONOTONIC at printk time)
    wall_time: float | None = None  # Unix seconds, UTC
    time_source: str | None = None  # what wall_time was read from
    host: str | None = None
    boot_id: str | None = None
    facility: int | None = None
    level: int | None = None
    trusted: bool = True  # False when something other than the kernel wrote it
    # The rest of the previous record after a newline in its text: dmesg, dmesg -T and journalctl
    # text print it on an indented line of its own (a process name may hold a newline).
    continuation: bool = False
    position: SourcePosition | None = None
