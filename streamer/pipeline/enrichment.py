"""Enrichment of kernel events: pod metadata (and ``analysis``), then correlation, then delivery.

Enrichment may wait (bounded) for a pod the cache has not seen yet, so each kernel event is
enriched in a task of its own: the processor never waits on the Kubernetes API. The event's
ticket was issued (and the event counted as owed) before that task starts, so the checkpoint
cannot pass it while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from parsers.events import OomEvent
from parsers.telemetry import Count, Tally, Telemetry
from streamer.pipeline.correlation import Correlation
from streamer.pipeline.delivery import Delivery
from streamer.pipeline.tickets import Ticket

ENRICHMENT_TELEMETRY = Telemetry(
    "pipeline.enrichment",
    (
        Count("events_submitted", "kill events handed to the sink"),
        Count("events_failed", "kill events that failed before the sink"),
        Count("enrich_errors", "enrichments that raised"),
    ),
)

log = logging.getLogger("oomstream.pipeline")

Enricher = Callable[[OomEvent], Awaitable[OomEvent]]


class Enrichment:
    def __init__(
        self, enrich: Enricher | None, correlation: Correlation, delivery: Delivery, counts: Tally
    ) -> None:
        self.enrich = enrich
        self.correlation = correlation
        self.delivery = delivery
        self.counts = counts
        self._tasks: set[asyncio.Task[None]] = set()

    async def kernel_event(self, event: OomEvent, ticket: Ticket) -> None:
        """Take one assembled event (the kernel stage's output)."""
        if self.enrich is None:
            await self._deliver(event, ticket)
            return
        task = asyncio.create_task(self._enrich_and_deliver(event, ticket), name=f"enrich:{event.event_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enrich_and_deliver(self, event: OomEvent, ticket: Ticket) -> None:
        assert self.enrich is not None
        try:
            event = await self.enrich(event)
        except Exception:
            self.counts["enrich_errors"] += 1
            log.exception("enrichment failed for event %s; sending it unenriched", event.event_id)
        try:
            await self._deliver(event, ticket)
        except Exception:
            # The ticket stays unsettled: the checkpoint stays before it, a restart sends it again.
            self.counts["events_failed"] += 1
            log.exception("could not hand event %s to the sink", event.event_id)

    async def _deliver(self, event: OomEvent, ticket: Ticket) -> None:
        correlated = self.correlation.observe(event, time.time())
        assert isinstance(correlated, OomEvent)
        ticket.event = correlated
        self.counts["events_submitted"] += 1
        await self.delivery.submit(ticket)

    async def settle(self) -> None:
        """Wait for events still being enriched (each wait is bounded by the enricher)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
