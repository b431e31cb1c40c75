"""End-to-end acknowledgement tracking: which source position is safe to checkpoint.

Every record fed to a source's assembler gets an increasing index. An event is "owed" from the
index of its report's first record (``source.report_position``) until the sink acknowledges it.
The checkpoint may advance to the record just before the oldest thing still owed, which is the
older of (a) the first record of a report the assembler has not released yet and (b) the first
record of any submitted, unacknowledged event. After a crash, reading resumes there, the report
is assembled again, and its events get the same ids, so at most the unacknowledged tail repeats.
"""

from __future__ import annotations

from collections import Counter, deque

from parsers.records import SourcePosition


class AckTracker:
    """Per source. Not thread-safe; lives on the event loop."""

    def __init__(self) -> None:
        self._next = 0
        self._window: deque[tuple[int, SourcePosition]] = deque()
        self._index_of: dict[SourcePosition, int] = {}
        self._owed: Counter[int] = Counter()
        self.last_saved: SourcePosition | None = None

    def fed(self, position: SourcePosition | None) -> int:
        """A record went into the assembler; returns its index."""
        index = self._next
        self._next += 1
        if position is not None:
            self._window.append((index, position))
            self._index_of[position] = index
        return index

    def index_of(self, position: SourcePosition | None) -> int | None:
        if position is None:
            return None
        return self._index_of.get(position)

    def submitted(self, origin: int) -> None:
        self._owed[origin] += 1

    def acknowledged(self, origin: int) -> None:
        left = self._owed[origin] - 1
        if left > 0:
            self._owed[origin] = left
        else:
            del self._owed[origin]

    @property
    def owed(self) -> int:
        return sum(self._owed.values())

    def safe_position(self, pending_origin: int | None) -> SourcePosition | None:
        """The newest position that may be checkpointed; trims the window behind it."""
        limit = self._next
        if pending_origin is not None:
            limit = min(limit, pending_origin)
        if self._owed:
            limit = min(limit, min(self._owed))
        safe: SourcePosition | None = None
        window = self._window
        while window and window[0][0] < limit:
            _index, position = window.popleft()
            self._index_of.pop(position, None)
            safe = position
        return safe
