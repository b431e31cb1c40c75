"""Kubernetes signals: read each signal source, skip what the ledger says was published, enrich,
correlate, deliver. Each signal's ticket is owned by its source: once delivered or spooled, its id
goes into the signal ledger and the source hears ``acknowledged`` (a Kafka input commits past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from parsers.events import K8sEvent
from streamer.pipeline.correlation import Correlation
from streamer.pipeline.delivery import Delivery
from streamer.pipeline.kernel import CheckpointSink
from streamer.pipeline.tickets import Outcome, Ticket
from streamer.sinks.base import DeliveryResult
from streamer.sources.signals import SignalSource

log = logging.getLogger("oomstream.pipeline")

SignalEnricher = Callable[[K8sEvent], Awaitable[K8sEvent]]
SIGNAL_LEDGER_NAME = "k8s-signals"  # the checkpoint-store entry holding published signal ids


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


class _SourceOwner:
    """Owns the tickets of one signal source's signals."""

    def __init__(self, source: SignalSource, ledger: SignalLedger | None) -> None:
        self.source = source
        self.ledger = ledger

    def settled(self, ticket: Ticket, outcome: Outcome, result: DeliveryResult) -> None:
        if outcome is Outcome.FAILED:  # unrecorded: a relist or a Kafka input offers it again
            return
        if self.ledger is not None:
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
        counts: Counter[str],
    ) -> None:
        self.sources = {source.name: source for source in sources}
        self.enrich = enrich
        self.correlation = correlation
        self.delivery = delivery
        self.ledger = ledger
        self.counts = counts
        self._owners = {name: _SourceOwner(source, ledger) for name, source in self.sources.items()}

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
        if self.ledger is not None and signal.event_id in self.ledger:
            self.counts["signals_already_published"] += 1
            source.acknowledged(signal)
            return
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

    def save_ledger(self, store: CheckpointSink) -> None:
        ledger = self.ledger
        if ledger is not None and ledger.dirty:
            try:
                store.save(SIGNAL_LEDGER_NAME, ledger.to_json(time.time()))
            except OSError:
                log.exception("saving the signal ledger failed")
                self.counts["checkpoint_errors"] += 1
