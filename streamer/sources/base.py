"""The source interface: an async iterator of framed kernel records, each with its position.

A source reads one kind of input (kmsg, journald, files/stdin), frames it with
``parsers.framing.Framer`` and yields ``KernelRecord``s whose ``position`` says exactly where
reading may resume after that record. Sources never wait on the sink: the pipeline decides
which positions are safe (acknowledged end to end) and persists checkpoints; a source only
receives its start position when it is created.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self

from parsers.framing import Framer
from parsers.records import KernelRecord, SourcePosition


class SourceError(Exception):
    """A source cannot run (bad configuration, missing permission); the message names the cause."""


class Source(Protocol):
    """What the pipeline needs from a source."""

    name: str  # unique per pipeline, used as the checkpoint key, e.g. "kmsg", "journald", "file:/var/log/x"
    counts: Counter[str]  # telemetry: lines, records, lost, gaps, restarts, ...

    def records(self) -> AsyncIterator[KernelRecord]:
        """Yield records in log order until closed (follow mode) or end of input."""
        ...

    def start_position(self) -> SourcePosition | None:
        """Where this source began (None: its configured default)."""
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
