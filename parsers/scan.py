"""Bulk scanning of log bytes: split lines, frame, assemble, with a keyword prefilter.

Kernel logs are mostly not about OOM. While no report is open, only a line containing one of a
few keywords can start or extend one, so the scanner jumps between keyword hits with
``bytes.find`` (memchr speed) and frames only those lines; inside an open report every line is
framed. Skipped lines are counted, never silently lost: they cannot carry OOM information.
"""

from __future__ import annotations

from parsers.events import OomEvent
from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.telemetry import Count, Tally, Telemetry

SCAN_TELEMETRY = Telemetry(
    "scan",
    (
        Count("lines", "lines read"),
        Count("lines_prefiltered", "lines passed over by the prefilter (no OOM report can start there)"),
        Count("long_lines_truncated", "lines longer than max_line_bytes, cut"),
    ),
)

# Every line that can open a report or touch a finished one holds one of these (see
# parsers/oom_lines.py): "ill" is in the header ("invoked oom-killer"), the oom-kill: summary, every
# kill line ("Kill process", "Killed process" with or without its message prefix, "OOM victim ...
# Skip killing"), "Task(s) in ... killed"; "oom_reaper" is the one line without it. A bare
# "Killed process" line (RHEL 7, kernels before 5.1 whose "Kill process" line was filtered out)
# therefore starts an event wherever it stands. Two needles, as before: "ill" is slower to search
# than the longer "of memory" it replaces, "oom_reaper" faster than "oom".
KEYWORD_TEXTS: tuple[str, ...] = ("ill", "oom_reaper")
KEYWORDS: tuple[bytes, ...] = tuple(keyword.encode() for keyword in KEYWORD_TEXTS)
# Format-specific lines worth framing: JSON entries whose MESSAGE is a byte array (text search
# cannot see into them), journalctl boot markers (they carry the boot id) and journalctl's
# "[NB blob data]" placeholders (unreadable records, counted: an OOM line may hide in one).
JSON_KEYWORDS: tuple[bytes, ...] = (*KEYWORDS, b'"MESSAGE":[')
JOURNALCTL_KEYWORDS: tuple[bytes, ...] = (*KEYWORDS, b"-- Boot ", b" blob data]")


def keywords_for(head: bytes) -> tuple[bytes, ...]:
    """Pick the keyword set from the shape of a chunk's first bytes (one sniff per chunk).

    journalctl text is recognised by its "kernel:" tag anywhere in the head, not only on the first
    line: a user-space record (a "host tag:" line of another tag) may come first.
    """
    if head.startswith(b"{"):
        return JSON_KEYWORDS
    if head.startswith(b"-- ") or b" kernel:" in head:
        return JOURNALCTL_KEYWORDS
    return KEYWORDS


DEFAULT_MAX_LINE_BYTES = 1 << 20
_INDENT = (0x20, 0x09)  # first byte of a continuation line


class LogScanner:
    """Feed byte chunks of one stream in order; collect events. Offsets are stream byte offsets."""

    def __init__(
        self,
        framer: Framer,
        assembler: Assembler,
        *,
        base_offset: int = 0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        prefilter: bool = True,
    ) -> None:
        self.framer = framer
        self.assembler = assembler
        self.max_line_bytes = max_line_bytes
        self.prefilter = prefilter
        self.counts: Tally = SCAN_TELEMETRY.tally()
        self._tail = b""
        self._tail_offset = base_offset
        self._discarding = False  # inside the rest of an over-long line

    def feed(self, data: bytes) -> list[OomEvent]:
        out: list[OomEvent] = []
        if not data:
            return out
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                self._tail_offset += len(data)
                return out
            self._discarding = False
            self._tail_offset += newline + 1
            data = data[newline + 1 :]
        if self._tail:
            # Complete the carried-over line on its own rather than copying the tail and the
            # whole chunk into a new buffer.
            newline = data.find(b"\n")
            if newline < 0:
                self._tail += data
                self._check_tail(out)
                return out
            head = self._tail + data[: newline + 1]
            self._scan(head, len(head), self._tail_offset, out)
            self._tail_offset += len(head)
            self._tail = b""
            data = data[newline + 1 :]
        buf = data
        buf_offset = self._tail_offset
        end = buf.rfind(b"\n")
        if end >= 0:
            self._scan(buf, end + 1, buf_offset, out)
        self._tail = buf[end + 1 :]
        self._tail_offset = buf_offset + end + 1
        self._check_tail(out)
        return out

    def _check_tail(self, out: list[OomEvent]) -> None:
        """An unfinished line longer than the limit is framed truncated; the rest is dropped."""
        if len(self._tail) > self.max_line_bytes:
            self._long_line(self._tail, self._tail_offset, out)
            self._tail_offset += len(self._tail)
            self._tail = b""
            self._discarding = True

    def finish(self) -> list[OomEvent]:
        out: list[OomEvent] = []
        if self._tail:
            self._scan(self._tail + b"\n", len(self._tail) + 1, self._tail_offset, out)
            self._tail = b""
        self._discarding = False
        return out

    # -- internals ---------------------------------------------------------------------------
    def _long_line(self, buf: bytes, offset: int, out: list[OomEvent]) -> None:
        self.counts["lines"] += 1
        self.counts["long_lines_truncated"] += 1
        self._frame(buf[: self.max_line_bytes], offset, out)

    def _frame(self, line: bytes, offset: int, out: list[OomEvent]) -> None:
        record = self.framer.frame(line, offset)
        if record is not None:
            out.extend(self.assembler.feed(record))

    def _scan(self, buf: bytes, limit: int, base: int, out: list[OomEvent]) -> None:
        """Process the complete lines in buf[:limit] (limit is just past a newline)."""
        assembler = self.assembler
        frame = self.framer.frame
        feed = assembler.feed
        prefilter = self.prefilter
        pos = 0
        lines = 0
        next_hit = dict.fromkeys(keywords_for(buf[: min(limit, 4096)]), -1)
        max_line = self.max_line_bytes
        while pos < limit:
            if prefilter and not assembler.needs_every_line:
                hit = limit
                for keyword, cached in next_hit.items():
                    if cached < pos:
                        cached = buf.find(keyword, pos, limit)
                        next_hit[keyword] = cached = limit if cached < 0 else cached
                    if cached < hit:
                        hit = cached
                if hit >= limit:
                    skipped = buf.count(b"\n", pos, limit)
                    lines += skipped
                    self.counts["lines_prefiltered"] += skipped
                    break
                start = buf.rfind(b"\n", pos, hit) + 1
                while start > pos and buf[start] in _INDENT:
                    # The hit is on a continuation line (a newline inside a record, printed
                    # indented by dmesg and journalctl): frame from the record's first line.
                    previous = buf.rfind(b"\n", pos, start - 1)
                    start = previous + 1 if previous >= 0 else pos
                if start > pos:
                    skipped = buf.count(b"\n", pos, start)
                    lines += skipped
                    self.counts["lines_prefiltered"] += skipped
                    pos = start
            # Line by line while a report is open (this loop is the hot path inside reports).
            while True:
                end = buf.find(b"\n", pos, limit)
                line = buf[pos:end]
                if len(line) > max_line:
                    self.counts["long_lines_truncated"] += 1
                    line = line[:max_line]
                record = frame(line, base + pos)
                if record is not None:
                    events = feed(record)
                    if events:
                        out.extend(events)
                lines += 1
                pos = end + 1
                if pos >= limit or (prefilter and not assembler.needs_every_line and buf[pos] not in _INDENT):
                    break  # (an indented line continues the record just framed: frame it too)
        self.counts["lines"] += lines
