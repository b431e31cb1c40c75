"""Delivery tickets: every event travels to the sink with one, and the ticket is settled once.

The pipeline hands the sink a ``Ticket`` as the event's only position; the sink gives it back in
its ``DeliveryResult``, and the delivery stage settles it: ``DELIVERED`` (the sink has it for good,
events or dead-letter topic), ``SPOOLED`` (delivery failed, the event is in the durable spool) or
``FAILED`` (neither). The ticket's owner, whoever owns the event's origin, hears the outcome:

- a kernel source's acknowledgement tracker (the checkpoint may pass the event's report once it is
  delivered or spooled; a failed one stays owed, so a restart reads it again);
- a signal source and the signal ledger (the id is recorded, a Kafka input commits its offset);
- the spool drain (a resent record leaves the spool when its whole batch arrived);
- nobody, for incident summaries (``NO_OWNER``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from parsers.events import AnyEvent
from streamer.sinks.base import DeliveryResult


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    SPOOLED = "spooled"
    FAILED = "failed"


class TicketOwner(Protocol):
    def settled(self, ticket: Ticket, outcome: Outcome, result: DeliveryResult) -> None:
        """The event of ``ticket`` has its final outcome (called once per ticket)."""
        ...


class _NoOwner:
    def settled(self, ticket: Ticket, outcome: Outcome, result: DeliveryResult) -> None:
        return None


NO_OWNER: TicketOwner = _NoOwner()


@dataclass(eq=False, slots=True)
class Ticket:
    """One submitted event and who hears its outcome. ``origin`` is the owner's own bookkeeping
    (a kernel event: the index of its report's first record; a resent record: its spool number)."""

    event: AnyEvent
    owner: TicketOwner
    kind: str  # "kernel", "signal", "incident", "spool": for counts and logs
    origin: int = -1
    settled: bool = False

    def settle(self, outcome: Outcome, result: DeliveryResult) -> bool:
        """Tell the owner; False (and nobody told) if this ticket was settled already."""
        if self.settled:
            return False
        self.settled = True
        self.owner.settled(self, outcome, result)
        return True
