"""Kernel assembly: sources -> one bounded queue -> each source's own assembler -> events.

One reader task per source puts records on a bounded queue (backpressure: a source that buffers,
like kmsg, keeps reading the kernel while the queue is full; the queue never blocks the kernel);
one processor feeds each source's assembler and attributes bare kills through the pid index.
Each event leaves with a ticket whose owner is its source's acknowledgement tracker: the event
is owed from the index of its report's first record until the ticket is settled delivered or
spooled, and ``checkpoint`` saves a source's position only past what nothing owes (see acks.py).

Sources whose records interleave many hosts (the syslog and HTTP listeners: ``many_hosts``) get
one assembler per host (``parsers.streams.HostAssemblers``); their pids name processes on other
machines, so the pid index never attributes their events. A source that answers its senders
(``SettlingSource``: the HTTP listener's 2xx) hears ``settled(position)`` every tick, under the same
rule as a checkpoint: every record up to ``position`` is durable (its tickets delivered or spooled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from parsers.events import OomEvent
from parsers.oom import Assembler
from parsers.records import KernelRecord, SourcePosition
from parsers.scan import KEYWORD_TEXTS
from parsers.streams import HostAssemblers
from parsers.telemetry import Count, Tally, Telemetry
from streamer.acks import AckTracker
from streamer.enrich.pid_index import PidIndex
from streamer.pipeline.tickets import Outcome, Ticket
from streamer.sinks.base import DeliveryResult
from streamer.sources.base import FatalSourceError, Source

KERNEL_TELEMETRY = Telemetry(
    "pipeline.kernel",
    (
        Count("source_failures", "sources that failed"),
        Count("checkpoints", "checkpoints saved"),
        Count("checkpoint_errors", "checkpoint saves that failed"),
    ),
)

log = logging.getLogger("oomstream.pipeline")

EventOut = Callable[[OomEvent, Ticket], Awaitable[None]]


class CheckpointSink(Protocol):
    """What the pipeline needs from a checkpoint store (streamer.checkpoint.CheckpointStore)."""

    def save(self, source_name: str, data: dict[str, Any]) -> None: ...


@runtime_checkable
class SettlingSource(Protocol):
    """A source told how far its records are durable, every tick (a listener answering senders)."""

    def settled(self, position: SourcePosition) -> None: ...


@dataclass
class _SourceState:
    """One source, its assembler(s) and its acknowledgement tracker; owns its events' tickets."""

    source: Source
    assembler: Assembler | HostAssemblers
    tracker: AckTracker = field(default_factory=AckTracker)
    done: bool = False

    @property
    def local(self) -> bool:
        """This machine's own kernel log: only then do its pids name processes in our /proc."""
        return not isinstance(self.assembler, HostAssemblers)

    def safe_position(self) -> SourcePosition | None:
        """The newest position nothing owed precedes, if it moved since the last one saved."""
        pending = self.tracker.index_of(self.assembler.oldest_pending_position())
        if pending is None and self.assembler.busy:
            return None  # pending work whose start we cannot place: do not move
        safe = self.tracker.safe_position(pending)
        return None if safe is None or safe == self.tracker.last_saved else safe

    def settled(self, ticket: Ticket, outcome: Outcome, result: DeliveryResult) -> None:
        if outcome is not Outcome.FAILED:  # failed: still owed, the checkpoint stays before it
            self.tracker.acknowledged(ticket.origin)


class KernelAssembly:
    def __init__(
        self,
        sources: Sequence[Source],
        emit: EventOut,
        *,
        queue_records: int,
        linger_seconds: float,
        report_timeout_seconds: float,
        max_tasks: int,
        pid_index: PidIndex | None = None,
        counts: Tally | None = None,
    ) -> None:
        self.emit = emit
        self.pid_index = pid_index
        self.counts: Tally = KERNEL_TELEMETRY.tally() if counts is None else counts

        def assembler() -> Assembler:
            return Assembler(
                linger_seconds=linger_seconds,
                report_timeout_seconds=report_timeout_seconds,
                max_tasks=max_tasks,
            )

        # Listeners interleave many hosts: one assembler per host.
        self._states = {
            source.name: _SourceState(
                source,
                HostAssemblers(assembler) if getattr(source, "many_hosts", False) else assembler(),
            )
            for source in sources
        }
        self.fatal_errors: list[FatalSourceError] = []
        self._queue: asyncio.Queue[tuple[str, KernelRecord] | None] = asyncio.Queue(queue_records)
        self._readers_left = len(self._states)
        if not self._states:
            self._queue.put_nowait(None)  # signals only: no kernel records will come

    @property
    def has_sources(self) -> bool:
        return bool(self._states)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def assemblers(self) -> list[Assembler | HostAssemblers]:
        """Each kernel source's assembler (for their telemetry)."""
        return [state.assembler for state in self._states.values()]

    def start(self, group: asyncio.TaskGroup) -> None:
        for state in self._states.values():
            group.create_task(self._read(state), name=f"read:{state.source.name}")

    async def close_sources(self) -> None:
        for state in self._states.values():
            with contextlib.suppress(Exception):
                await state.source.aclose()

    async def _read(self, state: _SourceState) -> None:
        source = state.source
        try:
            async for record in source.records():
                await self._queue.put((source.name, record))
        except FatalSourceError as error:
            log.error("source %s stopped: %s", source.name, error)
            self.counts["source_failures"] += 1
            self.fatal_errors.append(error)
        except Exception:
            log.exception("source %s failed; the pipeline goes on without it", source.name)
            self.counts["source_failures"] += 1
        finally:
            state.done = True
            self._readers_left -= 1
            if self._readers_left == 0:
                await self._queue.put(None)

    async def process(self, *, stopping: asyncio.Event) -> None:
        """Feed the assemblers until every source ended, then flush them."""
        while True:
            item = await self._queue.get()
            if item is None:
                break
            name, record = item
            state = self._states[name]
            state.tracker.fed(record.position)
            # The read time starts the record's deadlines (hold, report timeout) at once: a
            # backlog followed by silence is released by the ticker, not by a next record.
            events = state.assembler.feed(record, time.monotonic())
            if self.pid_index is not None and state.local and _mentions_oom(record.message):
                # A storm's next victims are alive now; index them before they die.
                await self.refresh_pid_index(force=True)
            for event in events:
                await self._submit(state, event)
        # Stopped by a signal, the service resumes later: an unfinished report is read again
        # then (the checkpoint stays before it) rather than sent now as a partial event.
        unfinished = not stopping.is_set()
        for state in self._states.values():
            for event in state.assembler.flush(unfinished=unfinished):
                await self._submit(state, event)

    async def tick(self, now: float) -> None:
        """Report deadlines (linger, timeout) and the pid index's periodic rescan."""
        for state in self._states.values():
            for event in state.assembler.tick(now):
                await self._submit(state, event)
        if self.pid_index is not None:
            await self.refresh_pid_index(force=False)

    async def refresh_pid_index(self, *, force: bool) -> None:
        index = self.pid_index
        assert index is not None
        now = time.monotonic()
        if force or index.due(now):
            await asyncio.to_thread(index.scan, now)

    async def _submit(self, state: _SourceState, event: OomEvent) -> None:
        if self.pid_index is not None and state.local:
            event = self.pid_index.attribute(event)
        origin = state.tracker.index_of(_report_position(event))
        if origin is None:
            origin = -1  # unknown origin (no positions): owed from the very start
        state.tracker.submitted(origin)  # owed from now: the checkpoint waits for the enrichment too
        await self.emit(event, Ticket(event, state, "kernel", origin=origin))

    def settle(self, flush_spool: Callable[[], bool]) -> None:
        """Tell each settling source how far its records are durable (the HTTP listener answers
        its senders then); spooled events count only once the spool is on disk."""
        for state in self._states.values():
            source = state.source
            if not isinstance(source, SettlingSource):
                continue
            safe = state.safe_position()
            if safe is None or not flush_spool():
                continue
            state.tracker.last_saved = safe
            source.settled(safe)

    def checkpoint(self, store: CheckpointSink) -> None:
        """Save each source's newest position that nothing owes any more, in its own format."""
        for name, state in self._states.items():
            if isinstance(state.source, SettlingSource):
                continue  # told by settle() instead; it has nothing to resume
            safe = state.safe_position()
            if safe is None:
                continue
            try:
                store.save(state.source.checkpoint_key, state.source.checkpoint_data(safe))
            except OSError as error:
                # Disk full or failing: the previous checkpoint stays (a restart repeats, never skips).
                log.error("checkpoint of %s failed (%s); keeping the previous one", name, error)
                self.counts["checkpoint_errors"] += 1
                continue
            state.tracker.last_saved = safe
            self.counts["checkpoints"] += 1


def _report_position(event: OomEvent) -> SourcePosition | None:
    data = event.source.report_position
    return None if data is None else SourcePosition.from_json(event.source.kind, data)


def _mentions_oom(message: str) -> bool:
    return any(keyword in message for keyword in KEYWORD_TEXTS)
