"""The live pipeline: sources -> assembler -> enrichment -> sink, with end-to-end acknowledgements.

Tasks under one ``asyncio.TaskGroup``:

- one reader per source, putting records on a bounded queue (backpressure: a source that buffers,
  like kmsg, keeps reading the kernel while the queue is full; the queue never blocks the kernel);
- one processor feeding each source's own assembler, attributing bare kills through the pid
  index, running the enrichment hook and submitting events to the sink;
- one reader per signal source (Kubernetes objects: API watch, JSON lines, a Kafka topic),
  enriching each signal and submitting it;
- a ticker (assembler deadlines, pid index refresh, checkpoints, spool drain, incident windows).

Enrichment may wait (bounded) for a pod the cache has not seen yet, so each kernel event is
enriched in a task of its own: the processor never waits on the Kubernetes API. The event is
counted as owed before that task starts, so the checkpoint cannot pass it while it waits.

A source position is checkpointed only when every event of every report that started at or
before it has been acknowledged by the sink, or written to the durable spool (see acks.py).
Listener sources (syslog, HTTP: ``many_hosts``) get one assembler per host and, instead of
a checkpoint, hear ``settled(position)`` every tick under the same rule (the HTTP listener
answers its senders then). A signal source hears ``acknowledged`` under the same rule, and
the ids of published signals are kept (the signal ledger) so a relist after a restart does not
publish them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from parsers.events import AnyEvent, IncidentEvent, K8sEvent, OomEvent, any_event_from_dict, event_to_json
from parsers.oom import Assembler
from parsers.records import KernelRecord, SourcePosition
from parsers.scan import KEYWORD_TEXTS
from parsers.streams import HostAssemblers
from streamer.acks import AckTracker
from streamer.enrich.pid_index import PidIndex
from streamer.sinks.base import DeliveryResult, DeliveryStatus, Sink
from streamer.sources.base import Source
from streamer.sources.signals import SignalSource
from streamer.spool import Spool, SpoolRecord

log = logging.getLogger("oomstream.pipeline")

Enricher = Callable[[OomEvent], Awaitable[OomEvent]]
SignalEnricher = Callable[[K8sEvent], Awaitable[K8sEvent]]
EventListener = Callable[[AnyEvent, DeliveryResult], None]
SIGNAL_LEDGER_NAME = "k8s-signals"  # the checkpoint-store entry holding published signal ids


class Correlator(Protocol):
    """What the pipeline needs from streamer.enrich.incidents.Correlator."""

    def observe(self, event: AnyEvent, now: float) -> AnyEvent: ...

    def tick(self, now: float) -> list[IncidentEvent]: ...

    def flush(self) -> list[IncidentEvent]: ...


# The positions the pipeline hands the sink with each event; the sink gives them back, untouched,
# in its DeliveryResult, and on_delivery tells them apart by type.
@dataclass(frozen=True, slots=True)
class KernelTag:
    """The delivery position of a kernel event: its source and the index of its report's first record."""

    source: str
    origin: int
    event_id: str


@dataclass(frozen=True, slots=True)
class SignalTag:
    """The delivery position of a Kubernetes signal."""

    source: str
    event_id: str


@dataclass(frozen=True, slots=True)
class IncidentTag:
    """The delivery position of an incident summary."""

    incident_id: str


@dataclass(frozen=True, slots=True)
class SpoolTag:
    """The delivery position of an event resent from the spool: its record number there."""

    number: int


class SignalLedger:
    """Ids of published signals with their publish time, bounded by age and count.

    Pod status keeps an OOMKilled termination in ``lastState`` for as long as the container
    lives, so every relist (and every restart of this service) shows it again; the ledger lets
    the pipeline recognise it as already published instead of publishing it (and a bogus
    "Kubernetes-only" incident) again.
    """

    def __init__(self, *, max_ids: int = 100_000, max_age_seconds: float = 7 * 86400) -> None:
        self.max_ids = max_ids
        self.max_age_seconds = max_age_seconds
        self._published: dict[str, float] = {}
        self.dirty = False

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._published

    def __len__(self) -> int:
        return len(self._published)

    def add(self, event_id: str, now: float) -> None:
        published = self._published
        published[event_id] = now
        self.dirty = True
        while len(published) > self.max_ids:  # oldest first: dicts keep insertion order
            del published[next(iter(published))]

    def to_json(self, now: float) -> dict[str, Any]:
        horizon = now - self.max_age_seconds
        self._published = {k: t for k, t in self._published.items() if t >= horizon}
        self.dirty = False
        return {"published": self._published}

    def load(self, data: dict[str, Any] | None) -> None:
        published = (data or {}).get("published")
        if isinstance(published, dict):
            for event_id, when in published.items():
                if isinstance(event_id, str) and isinstance(when, int | float):
                    self._published[event_id] = float(when)


class CheckpointSink(Protocol):
    """What the pipeline needs from a checkpoint store (streamer.checkpoint.CheckpointStore)."""

    def save(self, source_name: str, data: dict[str, Any]) -> None: ...


SPOOL_DRAIN_BATCH = 200


@dataclass
class PipelineSettings:
    queue_records: int = 10_000
    linger_seconds: float = 2.5
    report_timeout_seconds: float = 10.0
    tick_seconds: float = 0.25
    checkpoint_interval_seconds: float = 1.0
    shutdown_timeout_seconds: float = 10.0
    max_tasks: int = 20


def position_to_checkpoint(position: SourcePosition, boot_id: str | None) -> dict[str, Any]:
    data = position.to_json()
    data["kind"] = position.kind
    if boot_id is not None:
        data["boot_id"] = boot_id
    return data


def checkpoint_to_position(data: dict[str, Any]) -> SourcePosition:
    return SourcePosition.from_json(str(data.get("kind", "")), data)


@dataclass
class _SourceState:
    source: Source
    assembler: Assembler | HostAssemblers
    tracker: AckTracker = field(default_factory=AckTracker)
    boot_id: str | None = None
    done: bool = False

    @property
    def local(self) -> bool:
        """This machine's own kernel log: only then do its pids name processes in our /proc."""
        return not isinstance(self.assembler, HostAssemblers)


class Pipeline:
    def __init__(
        self,
        sources: Sequence[Source],
        sink: Sink,
        *,
        checkpoints: CheckpointSink | None = None,
        spool: Spool | None = None,
        pid_index: PidIndex | None = None,
        enrich: Enricher | None = None,
        on_published: EventListener | None = None,
        settings: PipelineSettings | None = None,
        signal_sources: Sequence[SignalSource] = (),
        enrich_signal: SignalEnricher | None = None,
        correlator: Correlator | None = None,
        signal_ledger: SignalLedger | None = None,
    ) -> None:
        self.settings = settings or PipelineSettings()
        self.sink = sink
        self.checkpoints = checkpoints
        self.spool = spool
        self.pid_index = pid_index
        self.enrich = enrich
        self.on_published = on_published
        self.signal_sources = {source.name: source for source in signal_sources}
        self.enrich_signal = enrich_signal
        self.correlator = correlator
        self.signal_ledger = signal_ledger
        self._enriching: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()
        self._states = {source.name: _SourceState(source, self._assembler_for(source)) for source in sources}
        self._queue: asyncio.Queue[tuple[str, KernelRecord] | None]
        self._queue = asyncio.Queue(self.settings.queue_records)
        self._stopping = asyncio.Event()
        self._processed = asyncio.Event()
        # Submitted events by delivery tag, until the sink reports their outcome.
        self._in_flight: dict[KernelTag | SignalTag | IncidentTag, AnyEvent] = {}
        self._readers_left = len(self._states)
        if not self._states:
            self._queue.put_nowait(None)  # signals only: no kernel records will come
        # Spool drain: the batch in flight, and whether every record of it was acknowledged.
        self._draining: dict[int, SpoolRecord] = {}
        self._drain_failed = False
        self._drain_last: SpoolRecord | None = None
        self._last_delivery_ok = True

    def _assembler_for(self, source: Source) -> Assembler | HostAssemblers:
        def assembler() -> Assembler:
            return Assembler(
                linger_seconds=self.settings.linger_seconds,
                report_timeout_seconds=self.settings.report_timeout_seconds,
                max_tasks=self.settings.max_tasks,
            )

        # Listeners and shipped-line topics interleave many hosts: one assembler per host.
        return HostAssemblers(assembler) if getattr(source, "many_hosts", False) else assembler()

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Graceful stop: sources close, queued records drain, reports flush, acks settle."""
        self._stopping.set()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def sink_healthy(self) -> bool:
        """False after a delivery failed for good, until the next one succeeds (for /readyz)."""
        return self._last_delivery_ok

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for state in self._states.values():
                    group.create_task(self._read(state), name=f"read:{state.source.name}")
                signal_readers = [
                    group.create_task(self._read_signals(source), name=f"signals:{name}")
                    for name, source in self.signal_sources.items()
                ]
                group.create_task(self._process(), name="process")
                ticker = group.create_task(self._tick(), name="tick")
                stopper = group.create_task(self._stop_sources_on_request(), name="stopper")
                await self._processed.wait()
                if self._states:
                    # The kernel input ended (a backfill, or a stop): so does listening for signals.
                    for source in self.signal_sources.values():
                        if source.endless:
                            with contextlib.suppress(Exception):
                                await source.aclose()
                if signal_readers:
                    await asyncio.wait(signal_readers)
                ticker.cancel()  # nothing is fed any more; what is left is settled below
                stopper.cancel()
                await self._settle_enrichment()
                if self.correlator is not None:
                    for incident in self.correlator.flush():
                        await self._submit_incident(incident)
        finally:
            await self._finish()

    # -- tasks -----------------------------------------------------------------------------------
    async def _read(self, state: _SourceState) -> None:
        source = state.source
        try:
            async for record in source.records():
                if record.boot_id is not None:
                    state.boot_id = record.boot_id
                await self._queue.put((source.name, record))
        except Exception:
            log.exception("source %s failed; the pipeline goes on without it", source.name)
            self.counts["source_failures"] += 1
        finally:
            state.done = True
            self._readers_left -= 1
            if self._readers_left == 0:
                await self._queue.put(None)

    async def _stop_sources_on_request(self) -> None:
        await self._stopping.wait()
        for state in self._states.values():
            with contextlib.suppress(Exception):
                await state.source.aclose()
        for source in self.signal_sources.values():
            with contextlib.suppress(Exception):
                await source.aclose()

    async def _read_signals(self, source: SignalSource) -> None:
        try:
            async for signal in source.signals():
                await self._submit_signal(source, signal)
        except Exception:
            log.exception("signal source %s failed; the pipeline goes on without it", source.name)
            self.counts["source_failures"] += 1

    async def _process(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    break
                name, record = item
                state = self._states[name]
                state.tracker.fed(record.position)
                events = state.assembler.feed(record)
                if self.pid_index is not None and state.local and _mentions_oom(record.message):
                    # A storm's next victims are alive now; index them before they die.
                    await self._refresh_pid_index(force=True)
                for event in events:
                    await self._submit(state, event)
            # Stopped by a signal, the service resumes later: an unfinished report is read again
            # then (the checkpoint stays before it) rather than sent now as a partial event.
            unfinished = not self._stopping.is_set()
            for state in self._states.values():
                for event in state.assembler.flush(unfinished=unfinished):
                    await self._submit(state, event)
        finally:
            self._processed.set()

    async def _tick(self) -> None:
        last_checkpoint = 0.0
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            now = time.monotonic()
            for state in self._states.values():
                for event in state.assembler.tick(now):
                    await self._submit(state, event)
            if self.pid_index is not None:
                await self._refresh_pid_index(force=False)
            if self.correlator is not None:
                for incident in self.correlator.tick(time.time()):
                    await self._submit_incident(incident)
            self._settle_listeners()
            if now - last_checkpoint >= self.settings.checkpoint_interval_seconds:
                self._checkpoint()
                last_checkpoint = now
            await self._drain_spool()

    async def _drain_spool(self) -> None:
        """Resend spooled events, oldest first, one batch at a time, when nothing is draining."""
        spool = self.spool
        if spool is None or self._draining or spool.events == 0:
            return
        self._drain_failed = False  # a new attempt: the sink retries with its own backoff
        batch = spool.peek(SPOOL_DRAIN_BATCH)
        if not batch:
            return
        self._drain_last = batch[-1]
        for record in batch:
            self._draining[record.number] = record
        for record in batch:
            try:
                event = decode_spooled(record.value)
            except (ValueError, TypeError, KeyError):
                log.error("spooled record %d is not an event; dropping it", record.number)
                self.counts["spool_corrupt"] += 1
                self._spool_settled(record.number, ok=True)
                continue
            await self.sink.submit(event, [SpoolTag(record.number)])

    async def _refresh_pid_index(self, *, force: bool) -> None:
        index = self.pid_index
        assert index is not None
        now = time.monotonic()
        if force or index.due(now):
            await asyncio.to_thread(index.scan, now)

    # -- events ----------------------------------------------------------------------------------
    async def _submit(self, state: _SourceState, event: OomEvent) -> None:
        if self.pid_index is not None and state.local:
            event = self.pid_index.attribute(event)
        origin = state.tracker.index_of(_report_position(event))
        if origin is None:
            origin = -1  # unknown origin (no positions): owed from the very start
        state.tracker.submitted(origin)  # owed from now: the checkpoint waits for the enrichment too
        key = KernelTag(state.source.name, origin, event.event_id)
        if self.enrich is None:
            await self._deliver_kernel_event(event, key)
            return
        task = asyncio.create_task(self._enrich_and_deliver(event, key), name=f"enrich:{event.event_id}")
        self._enriching.add(task)
        task.add_done_callback(self._enriching.discard)

    async def _enrich_and_deliver(self, event: OomEvent, key: KernelTag) -> None:
        assert self.enrich is not None
        try:
            event = await self.enrich(event)
        except Exception:
            self.counts["enrich_errors"] += 1
            log.exception("enrichment failed for event %s; sending it unenriched", event.event_id)
        try:
            await self._deliver_kernel_event(event, key)
        except Exception:
            # Still owed in the tracker: the checkpoint stays before it, a restart sends it again.
            self.counts["events_failed"] += 1
            log.exception("could not hand event %s to the sink", event.event_id)

    async def _deliver_kernel_event(self, event: OomEvent, key: KernelTag) -> None:
        if self.correlator is not None:
            correlated = self.correlator.observe(event, time.time())
            assert isinstance(correlated, OomEvent)
            event = correlated
        self._in_flight[key] = event
        self.counts["events_submitted"] += 1
        await self.sink.submit(event, [key])

    async def _settle_enrichment(self) -> None:
        """Wait for events still being enriched (each wait is bounded by the enricher)."""
        while self._enriching:
            await asyncio.wait(list(self._enriching))

    async def _submit_signal(self, source: SignalSource, signal: K8sEvent) -> None:
        self.counts["signals_read"] += 1
        if self.signal_ledger is not None and signal.event_id in self.signal_ledger:
            self.counts["signals_already_published"] += 1
            source.acknowledged(signal)
            return
        if self.enrich_signal is not None:
            try:
                signal = await self.enrich_signal(signal)
            except Exception:
                self.counts["enrich_errors"] += 1
                log.exception("enrichment failed for signal %s; sending it unenriched", signal.event_id)
        if self.correlator is not None:
            correlated = self.correlator.observe(signal, time.time())
            assert isinstance(correlated, K8sEvent)
            signal = correlated
        tag = SignalTag(source.name, signal.event_id)
        self._in_flight[tag] = signal
        self.counts["signals_submitted"] += 1
        await self.sink.submit(signal, [tag])

    async def _submit_incident(self, incident: IncidentEvent) -> None:
        tag = IncidentTag(incident.incident_id)
        self._in_flight[tag] = incident
        self.counts["incidents_submitted"] += 1
        await self.sink.submit(incident, [tag])

    def on_delivery(self, result: DeliveryResult) -> None:
        """The sink's delivery callback (pass it as ``on_delivery`` when building the sink)."""
        ok = result.status is not DeliveryStatus.FAILED
        self._last_delivery_ok = ok
        for position in result.positions:
            if isinstance(position, SpoolTag):
                self._spool_settled(position.number, ok=ok)
            elif isinstance(position, KernelTag | SignalTag | IncidentTag):
                self._settle(position, result, ok=ok)

    def _settle(self, tag: KernelTag | SignalTag | IncidentTag, result: DeliveryResult, *, ok: bool) -> None:
        """One submitted event's outcome: published, or failed and spooled (durable either way),
        or failed for good (a kernel event stays owed so the checkpoint cannot pass it; a signal
        stays unrecorded, and a Kafka input keeps its record uncommitted)."""
        event = self._in_flight.pop(tag, None)
        if ok:
            self.counts["events_acknowledged"] += 1
            if event is not None and self.on_published is not None:
                self.on_published(event, result)
        elif event is None or not self._spool_event(event, result):
            self.counts["events_failed"] += 1
            return
        if isinstance(tag, KernelTag):
            state = self._states.get(tag.source)
            if state is not None:
                state.tracker.acknowledged(tag.origin)
        elif isinstance(tag, SignalTag):
            if self.signal_ledger is not None:
                self.signal_ledger.add(tag.event_id, time.time())
            source = self.signal_sources.get(tag.source)
            if source is not None and isinstance(event, K8sEvent):
                source.acknowledged(event)

    def _spool_event(self, event: AnyEvent, result: DeliveryResult) -> bool:
        if self.spool is None:
            return False
        try:
            self.spool.append(None, event_to_json(event), {"reason": result.reason or "failed"})
        except Exception:
            log.exception("spool append failed for event %s", event.event_id)
            return False
        self.counts["events_spooled"] += 1
        return True

    def _spool_settled(self, number: int, *, ok: bool) -> None:
        """A drained record's outcome; the batch leaves the spool only when all of it arrived
        (a failed batch is resent whole later: at least once, same event ids)."""
        if self._draining.pop(number, None) is None:
            return
        if ok:
            self.counts["spool_resent"] += 1
        else:
            self._drain_failed = True
        if self._draining:
            return
        last, self._drain_last = self._drain_last, None
        spool = self.spool
        if spool is not None and last is not None and not self._drain_failed:
            spool.ack_through(last)
            spool.flush()

    # -- checkpoints -----------------------------------------------------------------------------
    def _safe_position(self, state: _SourceState) -> SourcePosition | None:
        """The newest position of ``state``'s source that nothing owed precedes (None: no move)."""
        pending = state.tracker.index_of(state.assembler.oldest_pending_position())
        if pending is None and state.assembler.busy:
            return None  # pending work whose start we cannot place: do not move
        safe = state.tracker.safe_position(pending)
        return None if safe is None or safe == state.tracker.last_saved else safe

    def _settle_listeners(self) -> None:
        """Tell listener sources how far their records are durable (events acknowledged or
        spooled, or no event owed), so they can answer their senders; they keep no checkpoint."""
        for state in self._states.values():
            settled = getattr(state.source, "settled", None)
            if settled is None:
                continue
            safe = self._safe_position(state)
            if safe is not None:
                if self.spool is not None and self.counts["events_spooled"]:
                    self.spool.flush()
                state.tracker.last_saved = safe
                settled(safe)

    def _checkpoint(self) -> None:
        if self.checkpoints is None:
            return
        if self.spool is not None and self.counts["events_spooled"]:
            # Checkpoints may cover spooled events only once the spool is on disk for good.
            self.spool.flush()
        ledger = self.signal_ledger
        if ledger is not None and ledger.dirty:
            try:
                self.checkpoints.save(SIGNAL_LEDGER_NAME, ledger.to_json(time.time()))
            except OSError:
                log.exception("saving the signal ledger failed")
                self.counts["checkpoint_errors"] += 1
        for name, state in self._states.items():
            if hasattr(state.source, "settled"):
                continue
            safe = self._safe_position(state)
            if safe is None:
                continue
            try:
                self.checkpoints.save(name, position_to_checkpoint(safe, state.boot_id))
            except OSError:
                log.exception("checkpoint of %s failed", name)
                self.counts["checkpoint_errors"] += 1
                continue
            state.tracker.last_saved = safe
            self.counts["checkpoints"] += 1

    async def _finish(self) -> None:
        try:
            await asyncio.wait_for(self.sink.flush(), self.settings.shutdown_timeout_seconds)
        except (TimeoutError, Exception):
            log.warning("sink did not flush within %.0f s", self.settings.shutdown_timeout_seconds)
        self._settle_listeners()
        self._checkpoint()


def _report_position(event: OomEvent) -> SourcePosition | None:
    data = event.source.report_position
    return None if data is None else SourcePosition.from_json(event.source.kind, data)


def _mentions_oom(message: str) -> bool:
    return any(keyword in message for keyword in KEYWORD_TEXTS)


def decode_spooled(value: bytes) -> AnyEvent:
    return any_event_from_dict(orjson.loads(value))
