"""Kubernetes signals: read each signal source, skip what the ledger says was published, enrich,
correlate, deliver. Each signal's ticket is owned by its source: once delivered or spooled, its id
goes into the signal ledger and the source hears ``acknowledged`` (a Kafka input commits past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from parsers.events import K8sEvent
from parsers.k8s import occurrence_key
from parsers.telemetry import Count, Tally, Telemetry
from streamer.logging_setup import RateLimiter
from streamer.pipeline.correlation import Correlation
from streamer.pipeline.delivery import Delivery
from streamer.pipeline.kernel import CheckpointSink
from streamer.pipeline.tickets import Outcome, Ticket
from streamer.sinks.base import DeliveryResult
from streamer.sources.signals import SignalSource

LEDGER_TELEMETRY = Telemetry(
    "signal_ledger",
    (
        Count("ids_evicted", "published signal ids forgotten", bound="signal_ledger_ids"),
        Count("objects_evicted", "Event objects' high-water marks forgotten", bound="signal_ledger_objects"),
        Count("expired", "entries older than 7 days dropped", bound="signal_ledger_age"),
    ),
)
SIGNAL_INTAKE_TELEMETRY = Telemetry(
    "pipeline.signals",
    (
        Count("signals_read", "signals read from the signal sources"),
        Count("signals_already_published", "signals the ledger had published before"),
        Count("signals_submitted", "signals handed to the sink"),
        Count("occurrence_jumps_capped", "Event count jumps declared in skipped_occurrences"),
        Count(
            "occurrences_skipped",
            "Occurrences of Kubernetes Events declared in skipped_occurrences, not emitted one by one",
            metric="oomstream_k8s_skipped_occurrences",
            bound="k8s_backfill_occurrences",
        ),
        Count("enrich_errors", "signal enrichments that raised"),
        Count("source_failures", "signal sources that failed"),
        Count("checkpoint_errors", "signal source checkpoints that failed"),
    ),
)

log = logging.getLogger("oomstream.pipeline")

SignalEnricher = Callable[[K8sEvent], Awaitable[K8sEvent]]
SIGNAL_LEDGER_NAME = "k8s-signals"  # the checkpoint-store entry holding published signal ids
SKIP_LOG_INTERVAL_SECONDS = 60.0  # at most one line per minute about capped occurrence jumps


class SignalLedger:
    """Ids of published signals with their publish time, and the highest published occurrence of
    each Event object; bounded by age and count.

    Pod status keeps an OOMKilled termination in ``lastState`` for as long as the container
    lives, so every relist (and every restart of this service) shows it again; the ledger lets
    the pipeline recognise it as already published instead of publishing it (and a bogus
    "Kubernetes-only" incident) again.

    An Event object's occurrences are published in order (one object, one Kafka key, one
    partition), and a declared ``skipped_occurrences`` range always lies below the occurrence that
    carries it, so the highest acknowledged occurrence says that 1..n are covered. After a restart
    the tracker starts again from 1: ``admit`` drops what was published and narrows a declared
    range to what was not, so emitted plus declared occurrences cover each count once. (A delivery
    that failed for good, not spooled, while later ones of the same object succeeded, stays a hole:
    it is counted in the pipeline's ``events_failed`` and logged by the sink.)

    Bounds: ``max_ids`` ids and ``max_ids`` objects (oldest forgotten first), ``max_age_seconds``
    (pruned when saved). What is forgotten is counted in ``counts`` (``ids_evicted``,
    ``objects_evicted``, ``expired``); a forgotten id or object, seen again, is published again.
    """

    def __init__(self, *, max_ids: int = 100_000, max_age_seconds: float = 7 * 86400) -> None:
        self.max_ids = max_ids
        self.max_age_seconds = max_age_seconds
        self._published: dict[str, float] = {}
        self._occurrences: dict[str, tuple[int, float]] = {}  # object key -> (highest occurrence, time)
        self.counts: Tally = LEDGER_TELEMETRY.tally()
        self.dirty = False

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._published

    def __len__(self) -> int:
        return len(self._published)

    def covered(self, key: str) -> int:
        """The highest published occurrence of the Event object ``key`` (0: none)."""
        entry = self._occurrences.get(key)
        return 0 if entry is None else entry[0]

    def admit(self, signal: K8sEvent) -> K8sEvent | None:
        """``signal`` as it should be published, or None when it was published already (its id,
        or an occurrence at or below its object's high-water mark). A declared
        ``skipped_occurrences`` range is narrowed to the part above the high-water mark."""
        if signal.event_id in self._published:
            return None
        key = occurrence_key(signal)
        covered = 0 if key is None else self.covered(key)
        if not covered:
            return signal
        if signal.occurrence <= covered:
            return None
        skipped = signal.skipped_occurrences
        if skipped is None or skipped["first"] > covered:
            return signal
        # Published before a restart (a fresh tracker starts from 1): declare only the rest.
        last = skipped["last"]
        narrowed = None if covered >= last else {"first": covered + 1, "last": last}
        return dataclasses.replace(signal, skipped_occurrences=narrowed)

    def record(self, signal: K8sEvent, now: float) -> None:
        """``signal`` is published: its id, and for an Event object's occurrence its high-water mark."""
        self.add(signal.event_id, now, key=occurrence_key(signal), occurrence=signal.occurrence)

    def add(self, event_id: str, now: float, *, key: str | None = None, occurrence: int = 0) -> None:
        published = self._published
        published[event_id] = now
        self.dirty = True
        while len(published) > self.max_ids:  # oldest first: dicts keep insertion order
            del published[next(iter(published))]
            self.counts["ids_evicted"] += 1
        if key is not None:
            occurrences = self._occurrences
            highest = max(occurrence, self.covered(key))
            occurrences.pop(key, None)  # re-inserted: the most recently published is kept longest
            occurrences[key] = (highest, now)
            while len(occurrences) > self.max_ids:
                del occurrences[next(iter(occurrences))]
                self.counts["objects_evicted"] += 1

    def to_json(self, now: float) -> dict[str, Any]:
        horizon = now - self.max_age_seconds
        before = len(self._published) + len(self._occurrences)
        self._published = {k: t for k, t in self._published.items() if t >= horizon}
        self._occurrences = {k: v for k, v in self._occurrences.items() if v[1] >= horizon}
        self.counts["expired"] += before - len(self._published) - len(self._occurrences)
        self.dirty = False
        return {
            "published": self._published,
            "occurrences": {key: [n, t] for key, (n, t) in self._occurrences.items()},
        }

    def load(self, data: dict[str, Any] | None) -> None:
        published = (data or {}).get("published")
        if isinstance(published, dict):
            for event_id, when in published.items():
                if isinstance(event_id, str) and isinstance(when, int | float):
                    self._published[event_id] = float(when)
        occurrences = (data or {}).get("occurrences")
        if isinstance(occurrences, dict):
            for key, entry in occurrences.items():
                if (
                    isinstance(key, str)
                    and isinstance(entry, list)
                    and len(entry) == 2
                    and isinstance(entry[0], int)
                    and isinstance(entry[1], int | float)
                ):
                    self._occurrences[key] = (entry[0], float(entry[1]))


class _SourceOwner:
    """Owns the tickets of one signal source's signals."""

    def __init__(self, source: SignalSource, ledger: SignalLedger | None) -> None:
        self.source = source
        self.ledger = ledger

    def settled(self, ticket: Ticket, outcome: Outcome, result: DeliveryResult) -> None:
        if outcome is Outcome.FAILED:  # unrecorded: a relist or a Kafka input offers it again
            return
        if self.ledger is not None:
            if isinstance(ticket.event, K8sEvent):
                self.ledger.record(ticket.event, time.time())
            else:
                self.ledger.add(ticket.event.event_id, time.time())
        if isinstance(ticket.event, K8sEvent):
            self.source.acknowledged(ticket.event)


class SignalIntake:
    def __init__(
        self,
        sources: Sequence[SignalSource],
        *,
        enrich: SignalEnricher | None,
        correlation: Correlation,
        delivery: Delivery,
        ledger: SignalLedger | None,
        counts: Tally,
    ) -> None:
        self.sources = {source.name: source for source in sources}
        self.enrich = enrich
        self.correlation = correlation
        self.delivery = delivery
        self.ledger = ledger
        self.counts = counts
        self._owners = {name: _SourceOwner(source, ledger) for name, source in self.sources.items()}
        self._skip_log = RateLimiter(SKIP_LOG_INTERVAL_SECONDS)

    def start(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        return [
            group.create_task(self._read(source), name=f"signals:{name}")
            for name, source in self.sources.items()
        ]

    async def close(self, *, endless_only: bool = False) -> None:
        for source in self.sources.values():
            if source.endless or not endless_only:
                with contextlib.suppress(Exception):
                    await source.aclose()

    async def _read(self, source: SignalSource) -> None:
        try:
            async for signal in source.signals():
                await self._submit(source, signal)
        except Exception:
            log.exception("signal source %s failed; the pipeline goes on without it", source.name)
            self.counts["source_failures"] += 1

    async def _submit(self, source: SignalSource, signal: K8sEvent) -> None:
        self.counts["signals_read"] += 1
        if self.ledger is not None:
            admitted = self.ledger.admit(signal)
            if admitted is None:
                self.counts["signals_already_published"] += 1
                source.acknowledged(signal)
                return
            signal = admitted
        if signal.skipped_occurrences is not None:
            self._note_skipped(signal, signal.skipped_occurrences)
        if self.enrich is not None:
            try:
                signal = await self.enrich(signal)
            except Exception:
                self.counts["enrich_errors"] += 1
                log.exception("enrichment failed for signal %s; sending it unenriched", signal.event_id)
        correlated = self.correlation.observe(signal, time.time())
        assert isinstance(correlated, K8sEvent)
        self.counts["signals_submitted"] += 1
        await self.delivery.submit(Ticket(correlated, self._owners[source.name], "signal"))

    def _note_skipped(self, signal: K8sEvent, skipped: dict[str, int]) -> None:
        """Count the occurrences declared instead of emitted, and say so in one rate-limited line."""
        number = skipped["last"] - skipped["first"] + 1
        self.counts["occurrences_skipped"] += number
        self.counts["occurrence_jumps_capped"] += 1
        held = self._skip_log.check("skipped_occurrences")
        if held is None:
            return
        origin = signal.origin
        log.warning(
            "Kubernetes Event %s/%s (%s) jumped to count %s: occurrences %d..%d are declared in "
            "skipped_occurrences of event %s (occurrence %d), not emitted one by one "
            "(kubernetes.max_backfill_occurrences)%s",
            origin.get("namespace") or "", origin.get("name") or origin.get("uid") or "?",
            signal.reason, signal.details.get("count"), skipped["first"], skipped["last"],
            signal.event_id, signal.occurrence,
            f"; {held} more such jumps in the last {SKIP_LOG_INTERVAL_SECONDS:.0f} s" if held else "",
            extra={"rate_limit": False},
        )  # fmt: skip

    def save_ledger(self, store: CheckpointSink) -> None:
        ledger = self.ledger
        if ledger is not None and ledger.dirty:
            try:
                store.save(SIGNAL_LEDGER_NAME, ledger.to_json(time.time()))
            except OSError:
                log.exception("saving the signal ledger failed")
                self.counts["checkpoint_errors"] += 1
