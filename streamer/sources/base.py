"""The source interface: an async iterator of framed kernel records, each with its position.

A source reads one kind of input (kmsg, journald, files/stdin), frames it with
``parsers.framing.Framer`` and yields ``KernelRecord``s whose ``position`` says exactly where
reading may resume after that record. Sources never wait on the sink: the pipeline decides
which positions are safe (acknowledged end to end) and asks the source what to save for one
(``checkpoint_data``) under the source's own key (``checkpoint_key``). A source is given its saved
data back when its component builds it, and decodes it itself: each kind has its own position
(kmsg: seq and boot id; journald: cursor; files: offset, device, inode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol, Self

from parsers.framing import Framer
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry

# What every source counts (each its own metric, labelled by source; zero for sources that do not
# count it). A source's Telemetry is ``SOURCE_TELEMETRY + Telemetry(<its own keys>)``.
SOURCE_TELEMETRY = Telemetry(
    "source",
    (
        Count("lines", "Lines (or raw records) read, per source", metric="oomstream_source_lines_read"),
        Count("records", "Kernel records framed, per source", metric="oomstream_source_records"),
        Count(
            "lost",
            "Kernel records lost before they could be read (kmsg ring overrun, journald 'missed' notices)",
            metric="oomstream_source_lost_records",
        ),
        Count(
            "untrusted",
            "Records claiming to be kernel messages that something else wrote (ignored for OOM reports)",
            metric="oomstream_untrusted_records",
        ),
        Count(
            "gaps",
            "Discontinuities in a source's sequence (rotation, truncation)",
            metric="oomstream_source_gaps",
        ),
        Count(
            "restarts", "Times a source reopened its input after an error", metric="oomstream_source_restarts"
        ),
    ),
)


class SourceError(Exception):
    """A source cannot run (bad configuration, missing permission); the message names the cause."""


class FatalSourceError(SourceError):
    """Raised by ``records()`` when a running source meets a problem no restart fixes (a Kafka
    transactional id fenced by another process): the service stops with this message (exit 2)
    instead of going on without the source."""


class Source(Protocol):
    """What the pipeline needs from a source."""

    name: str  # unique per pipeline, e.g. "kmsg", "journald", "file:/var/log/x"
    checkpoint_key: str  # the checkpoint-store entry this source resumes from
    counts: Tally  # telemetry: SOURCE_TELEMETRY plus what the source declares

    def records(self) -> AsyncIterator[KernelRecord]:
        """Yield records in log order until closed (follow mode) or end of input."""
        ...

    def start_position(self) -> SourcePosition | None:
        """Where this source began (None: its configured default)."""
        ...

    def checkpoint_data(self, position: SourcePosition) -> dict[str, Any]:
        """The JSON object to save so that a restart resumes reading after ``position``."""
        ...

    async def aclose(self) -> None:
        """Stop reading; records() ends soon after."""
        ...


class ClosingSource:
    """The ``async with`` lifecycle the sources share, record or signal: leaving the block
    calls ``aclose``. A source that connects or opens on entry overrides ``__aenter__``."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class FramedSource(ClosingSource):
    """What the kernel-record sources share besides the lifecycle: their Framer (whose counts
    feed the metrics)."""

    _framer: Framer

    @property
    def framer(self) -> Framer:
        return self._framer
