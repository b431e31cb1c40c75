"""Correlation: every event passes the correlator on its way to delivery (it gets its incident id),
and the incident summaries the correlator closes are delivered with tickets nobody owns."""

from __future__ import annotations

from typing import Protocol

from parsers.events import AnyEvent, IncidentEvent
from parsers.telemetry import Count, Tally, Telemetry
from streamer.pipeline.delivery import Delivery
from streamer.pipeline.tickets import NO_OWNER, Ticket

CORRELATION_TELEMETRY = Telemetry(
    "pipeline.correlation",
    (Count("incidents_submitted", "incident summaries handed to the sink"),),
)


class Correlator(Protocol):
    """What the pipeline needs from streamer.enrich.incidents.Correlator."""

    def observe(self, event: AnyEvent, now: float) -> AnyEvent: ...

    def tick(self, now: float) -> list[IncidentEvent]: ...

    def flush(self) -> list[IncidentEvent]: ...


class Correlation:
    def __init__(self, correlator: Correlator | None, delivery: Delivery, counts: Tally) -> None:
        self.correlator = correlator
        self.delivery = delivery
        self.counts = counts

    def observe(self, event: AnyEvent, now: float) -> AnyEvent:
        return event if self.correlator is None else self.correlator.observe(event, now)

    async def tick(self, now: float) -> None:
        """Close the incidents whose window ended (``now``: wall-clock seconds)."""
        if self.correlator is not None:
            for incident in self.correlator.tick(now):
                await self._submit(incident)

    async def flush(self) -> None:
        if self.correlator is not None:
            for incident in self.correlator.flush():
                await self._submit(incident)

    async def _submit(self, incident: IncidentEvent) -> None:
        self.counts["incidents_submitted"] += 1
        await self.delivery.submit(Ticket(incident, NO_OWNER, "incident"))
