"""One assembler per host for inputs that interleave many machines' kernel logs.

A syslog or HTTP listener, or a Kafka topic of shipped lines, carries records of many hosts at
once; a report can only be assembled from one host's lines in order, so each host (and boot)
gets its own ``Assembler``. Records must carry a position whose ``offset`` grows with arrival
(the listeners number their records), which is how the oldest pending report across hosts is
found for checkpoints and acknowledgements.
"""

from __future__ import annotations

from collections.abc import Callable

from parsers.events import OomEvent
from parsers.oom import ASSEMBLER_TELEMETRY, Assembler
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry

# Every stream's assembler counts into one tally (telemetry per source, not per host).
HOST_ASSEMBLERS_TELEMETRY = ASSEMBLER_TELEMETRY + Telemetry(
    "host_assemblers",
    (Count("streams_evicted", "times idle per-host assemblers were forgotten (max_streams reached)"),),
)


class HostAssemblers:
    """The ``Assembler`` interface the pipeline uses, fanned out by ``(host, boot_id)``."""

    def __init__(self, factory: Callable[[], Assembler], *, max_streams: int = 100_000) -> None:
        self._factory = factory
        self.max_streams = max_streams
        self._streams: dict[tuple[str | None, str | None], Assembler] = {}
        self._by_host: dict[str | None, list[Assembler]] = {}
        self.counts: Tally = HOST_ASSEMBLERS_TELEMETRY.tally()
        self._now: float | None = None  # the latest tick, for streams that start after it

    @property
    def streams(self) -> int:
        return len(self._streams)

    @property
    def busy(self) -> bool:
        return any(assembler.busy for assembler in self._streams.values())

    def feed(self, record: KernelRecord, now: float | None = None) -> list[OomEvent]:
        key = (record.host, record.boot_id)
        assembler = self._streams.get(key)
        if assembler is None:
            if len(self._streams) >= self.max_streams:
                self._evict_idle()
            assembler = self._streams[key] = self._factory()
            assembler.counts = self.counts
            self._by_host.setdefault(record.host, []).append(assembler)
            if self._now is not None:
                # A report without kernel times (imkmsg relayed, journald export) expires on tick
                # time only, counted from the tick its assembler last heard.
                assembler.tick(self._now)
        return assembler.feed(record, now)

    def needs_every_line(self, host: str | None) -> bool:
        """Whether a line of ``host`` without an OOM keyword may still matter (a keyword
        prefilter may skip it otherwise; see parsers.scan)."""
        return any(assembler.needs_every_line for assembler in self._by_host.get(host, ()))

    def tick(self, now: float) -> list[OomEvent]:
        self._now = now
        out: list[OomEvent] = []
        for assembler in self._streams.values():
            out += assembler.tick(now)
        return out

    def flush(self, *, unfinished: bool = True) -> list[OomEvent]:
        out: list[OomEvent] = []
        for assembler in self._streams.values():
            out += assembler.flush(unfinished=unfinished)
        return out

    def flush_streams(self, keep: Callable[[str | None], bool], *, unfinished: bool) -> list[OomEvent]:
        """Flush and forget the streams of hosts ``keep`` rejects (a Kafka partition revoked)."""
        out: list[OomEvent] = []
        for key in [key for key in self._streams if not keep(key[0])]:
            assembler = self._streams.pop(key)
            self._forget(key[0], assembler)
            out += assembler.flush(unfinished=unfinished)
        return out

    def oldest_pending_position(self) -> SourcePosition | None:
        oldest: SourcePosition | None = None
        for assembler in self._streams.values():
            position = assembler.oldest_pending_position()
            if position is None:
                continue
            if oldest is None or (position.offset or 0) < (oldest.offset or 0):
                oldest = position
        return oldest

    def _evict_idle(self) -> None:
        """Forget idle streams (hosts long gone) so a churning fleet cannot grow this forever."""
        for key in [key for key, assembler in self._streams.items() if not assembler.busy]:
            assembler = self._streams.pop(key)
            self._forget(key[0], assembler)
        self.counts["streams_evicted"] += 1

    def _forget(self, host: str | None, assembler: Assembler) -> None:
        left = [other for other in self._by_host.get(host, ()) if other is not assembler]
        if left:
            self._by_host[host] = left
        else:
            self._by_host.pop(host, None)
