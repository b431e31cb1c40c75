"""Delivery: hand events to the sink, settle each ticket from the sink's result, spool what failed,
and resend the spool when the sink delivers again.

The sink reports one ``DeliveryResult`` per event with the event's ticket as its position
(``on_result``, the sink's ``on_delivery`` callback). A failed event is appended to the spool; if
that works the ticket is ``SPOOLED`` (durable: its origin may move on), else ``FAILED``. The spool
is drained oldest first, one batch at a time; a batch leaves the spool only when every record of
it arrived (a failed batch is resent whole later: at least once, same event ids).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from parsers.events import AnyEvent, any_event_from_dict, event_to_json
from parsers.telemetry import Count, Tally, Telemetry
from streamer.pipeline.tickets import Outcome, Ticket
from streamer.sinks.base import DeliveryResult, DeliveryStatus, Sink
from streamer.spool import Spool, SpoolRecord

DELIVERY_TELEMETRY = Telemetry(
    "pipeline.delivery",
    (
        Count("events_acknowledged", "events the sink acknowledged"),
        Count("events_failed", "events that failed for good"),
        Count("events_spooled", "events written to the spool"),
        Count("spool_resent", "spooled events sent again"),
        Count("spool_errors", "spool reads or appends that failed"),
        Count("spool_corrupt", "spooled records that did not decode"),
    ),
)

log = logging.getLogger("oomstream.pipeline")

SPOOL_DRAIN_BATCH = 200
EventListener = Callable[[AnyEvent, DeliveryResult], None]


class Delivery:
    """The sink side of the pipeline. Build it first, give ``on_result`` to the sink as its
    ``on_delivery``, then ``connect`` the sink."""

    def __init__(
        self,
        *,
        spool: Spool | None = None,
        on_published: EventListener | None = None,
        counts: Tally | None = None,
    ) -> None:
        self.spool = spool
        self.on_published = on_published
        self.counts: Tally = DELIVERY_TELEMETRY.tally() if counts is None else counts
        self._sink: Sink | None = None
        self._last_ok = True
        # Spool drain: the batch in flight, and whether every record of it was acknowledged.
        self._draining: dict[int, SpoolRecord] = {}
        self._drain_failed = False
        self._drain_last: SpoolRecord | None = None

    def connect(self, sink: Sink) -> None:
        self._sink = sink

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            raise RuntimeError("Delivery.connect(sink) was not called")
        return self._sink

    @property
    def healthy(self) -> bool:
        """False after a delivery failed for good, until the next one succeeds (for /readyz)."""
        return self._last_ok

    async def submit(self, ticket: Ticket) -> None:
        await self.sink.submit(ticket.event, [ticket])

    def on_result(self, result: DeliveryResult) -> None:
        """The sink's delivery callback: settle the ticket of each event it reports."""
        ok = result.status is not DeliveryStatus.FAILED
        self._last_ok = ok
        for ticket in result.positions:
            if not isinstance(ticket, Ticket):
                continue
            if ticket.kind == "spool":
                ticket.settle(Outcome.DELIVERED if ok else Outcome.FAILED, result)
            elif ok:
                if ticket.settle(Outcome.DELIVERED, result):
                    self.counts["events_acknowledged"] += 1
                    if self.on_published is not None:
                        self.on_published(ticket.event, result)
            elif not ticket.settled and self._spool_event(ticket.event, result):
                ticket.settle(Outcome.SPOOLED, result)
            elif ticket.settle(Outcome.FAILED, result):
                self.counts["events_failed"] += 1

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

    def flush_spool(self) -> bool:
        """Before a checkpoint may cover spooled events, the spool must be on disk for good:
        False when it could not be written (checkpoints wait until it can)."""
        if self.spool is not None and self.counts["events_spooled"]:
            try:
                self.spool.flush()
            except OSError as error:
                log.error("spool flush failed (%s); checkpoints wait until it succeeds", error)
                self.counts["spool_errors"] += 1
                return False
        return True

    # -- the spool drain -------------------------------------------------------------------------
    async def drain_spool(self) -> None:
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
            await self.sink.submit(event, [Ticket(event, self, "spool", origin=record.number)])

    def settled(self, ticket: Ticket, outcome: Outcome, result: DeliveryResult) -> None:
        """A resent record's outcome (the drain owns the tickets of resent records)."""
        self._spool_settled(ticket.origin, ok=outcome is Outcome.DELIVERED)

    def _spool_settled(self, number: int, *, ok: bool) -> None:
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
            try:
                spool.ack_through(last)
                spool.flush()
            except OSError as error:
                # The acknowledgement is kept in memory; on disk the cursor stays behind, so a
                # restart resends these (same ids) rather than losing any.
                log.error("spool cursor could not be written (%s); a restart resends these", error)
                self.counts["spool_errors"] += 1


def decode_spooled(value: bytes) -> AnyEvent:
    return any_event_from_dict(orjson.loads(value))
