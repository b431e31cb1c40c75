"""The sink interface: where normalized events leave the process.

A sink takes an event together with the opaque source positions it covers and, later, reports one
``DeliveryResult`` per submitted event through a callback. The sink never decides what is safe to
checkpoint: the pipeline reads ``result.acknowledged`` and advances its own position tracking.

Lifecycle: ``async with sink:`` starts it, and on exit flushes (waits for every outstanding result)
and closes it. ``submit`` may wait for capacity (backpressure) but never for the delivery itself.
"""

from __future__ import annotations

import abc
import enum
import logging
import socket
import time
import weakref
from collections import Counter as TallyCounter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import orjson

from parsers.events import AnyEvent, IncidentEvent, OomEvent, event_to_dict, format_time
from parsers.telemetry import Count, Tally, Telemetry
from streamer.errors import FatalSinkError, RetriableSinkError, SinkConfigError, SinkError

# What the record size bound leaves out of dead letters (``dead_letter_to_json(counts=...)``).
DEAD_LETTER_TELEMETRY = Telemetry(
    "dead_letters",
    (
        Count(
            "dead_letter_events_left_out", "dead letters sent without their event", bound="dead_letter_events"
        ),
        Count("dead_letter_raw_lines_cut", "raw lines cut from dead letters", bound="dead_letter_raw_lines"),
    ),
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry  # loaded with the metrics, not by check-config

__all__ = ["FatalSinkError", "RetriableSinkError", "SinkConfigError", "SinkError"]

log = logging.getLogger("oomstream.sinks")

DEAD_LETTER_TYPE = "dead_letter"
DEAD_LETTER_VERSION = 1

# Dead-letter reasons that are not errors: the input itself was incomplete or unreadable.
REASON_PARTIAL_REPORT = "partial_report"
REASON_UNPARSEABLE = "unparseable_input"


class SinkClosedError(FatalSinkError):
    """``submit`` after ``close`` (or before ``start``)."""


class DeliveryStatus(enum.Enum):
    ACKED = "acked"  # every record the sink meant to write was acknowledged
    DEAD_LETTERED = "dead_lettered"  # the destination refused it for good; a dead letter was acknowledged
    FAILED = "failed"  # not durably written anywhere: the positions must not be checkpointed


class DeliveryResult(NamedTuple):
    """The outcome for one submitted event (or dead letter) and the source positions it covers.

    A NamedTuple rather than a frozen dataclass: just as immutable, at half the construction cost,
    and one is built per event.
    """

    event_id: str | None
    positions: tuple[object, ...]
    status: DeliveryStatus
    reason: str | None = None  # machine-readable: partial_report, message_too_large, connection_error...
    error: str | None = None  # human-readable detail of the last error, if any
    topic: str | None = None  # where the main record went (events topic, or dead-letter topic)
    partition: int | None = None
    offset: int | None = None
    latency_seconds: float = 0.0  # submit to final outcome, retries included
    dead_lettered: bool = False  # a dead-letter record was written (also for partial events that were sent)

    @property
    def acknowledged(self) -> bool:
        """True when the input is durably recorded somewhere (events or dead-letter destination)."""
        return self.status is not DeliveryStatus.FAILED


DeliveryCallback = Callable[[DeliveryResult], None]


@dataclass
class DeliveryTally:
    """A ready-made delivery callback that counts outcomes and keeps the failures (CLI, tests)."""

    sent: int = 0
    dead_lettered: int = 0
    failed: int = 0
    dead_letter_copies: int = 0  # ACKED results that also wrote a dead letter (partial events)
    failures: list[DeliveryResult] = field(default_factory=list)
    reasons: TallyCounter[str] = field(default_factory=TallyCounter)
    keep_results: bool = False
    results: list[DeliveryResult] = field(default_factory=list)

    def __call__(self, result: DeliveryResult) -> None:
        if self.keep_results:
            self.results.append(result)
        if result.status is DeliveryStatus.ACKED:
            self.sent += 1
            if result.dead_lettered:
                self.dead_letter_copies += 1
        elif result.status is DeliveryStatus.DEAD_LETTERED:
            self.dead_lettered += 1
        else:
            self.failed += 1
            if len(self.failures) < 1000:  # enough to report; a dead broker must not eat memory
                self.failures.append(result)
        if result.reason is not None and result.status is not DeliveryStatus.ACKED:
            self.reasons[result.reason] += 1

    @property
    def total(self) -> int:
        return self.sent + self.dead_lettered + self.failed


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not become a (complete) event, with the raw lines and the reason."""

    reason: str
    raw_lines: tuple[str, ...] = ()
    error: str | None = None
    raw_lines_total: int | None = None  # lines the input had, when raw_lines holds only the first ones
    event: AnyEvent | None = None  # the partial or refused event, when there is one
    host: str | None = None
    source: dict[str, Any] | None = None

    @classmethod
    def from_event(cls, event: AnyEvent, reason: str, error: str | None = None) -> DeadLetter:
        source = None
        if not isinstance(event, IncidentEvent):  # incidents have no input position
            origin = event.source
            source = {"kind": origin.kind, "format": origin.format, "position": origin.position}
        raw_lines = event.raw_lines if isinstance(event, OomEvent) else None
        return cls(
            reason=reason,
            raw_lines=tuple(raw_lines or ()),
            error=error,
            raw_lines_total=event.raw_lines_total if isinstance(event, OomEvent) else None,
            event=event,
            host=event.host,
            source=source,
        )

    @property
    def event_id(self) -> str | None:
        return self.event.event_id if self.event is not None else None


def producer_host() -> str:
    return socket.gethostname()


def dead_letter_to_json(
    letter: DeadLetter,
    *,
    producer: str | None = None,
    max_bytes: int | None = None,
    include_event: bool = True,
    counts: Tally | None = None,
) -> bytes:
    """The dead-letter envelope (one JSON object; ``type`` tells it apart from events).

    ``max_bytes`` keeps the envelope below a transport limit: the embedded event is dropped first,
    then raw lines are cut from the end, and ``raw_lines_truncated`` says so. A record refused for
    its size must still leave a trace of what it was. ``counts`` (when given) tallies what was left
    out: ``dead_letter_events_left_out``, ``dead_letter_raw_lines_cut``.
    """
    envelope: dict[str, Any] = {
        "type": DEAD_LETTER_TYPE,
        "dead_letter_version": DEAD_LETTER_VERSION,
        "reason": letter.reason,
        "error": letter.error,
        "event_id": letter.event_id,
        "host": letter.host,
        "producer_host": producer,
        "time": format_time(time.time()),
        "source": letter.source,
        "raw_lines": list(letter.raw_lines),
        # The assembler may have kept only a report's first lines: the total says how many it had.
        "raw_lines_total": max(letter.raw_lines_total or 0, len(letter.raw_lines)),
        "raw_lines_truncated": (letter.raw_lines_total or 0) > len(letter.raw_lines),
        "event": event_to_dict(letter.event) if include_event and letter.event is not None else None,
    }
    data = orjson.dumps(envelope)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    if envelope["event"] is not None and counts is not None:
        counts["dead_letter_events_left_out"] += 1
    envelope["event"] = None
    data = orjson.dumps(envelope)
    lines: list[str] = envelope["raw_lines"]
    while len(data) > max_bytes and lines:
        if counts is not None:
            counts["dead_letter_raw_lines_cut"] += 1
        overshoot = len(data) - max_bytes
        # Drop whole lines from the end until it fits; one big line is cut itself.
        last = lines[-1]
        if len(last.encode("utf-8", "surrogateescape")) > overshoot + 64 and len(lines) == 1:
            lines[-1] = last[: max(0, len(last) - overshoot - 64)]
        else:
            lines.pop()
        envelope["raw_lines_truncated"] = True
        data = orjson.dumps(envelope)
    return data


class SinkMetrics:
    """Prometheus metrics shared by every sink; the ``sink`` label tells sinks apart."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Imported here: `check-config` and `--help` load the sink modules for their options only.
        from prometheus_client import Counter, Gauge, Histogram

        self.events_sent = Counter(
            "oomstream_sink_events_sent",
            "Events acknowledged by the destination",
            ["sink", "topic"],
            registry=registry,
        )
        self.events_failed = Counter(
            "oomstream_sink_events_failed",
            "Records that failed, by reason (retried, dead-lettered or given up)",
            ["sink", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "oomstream_sink_retries",
            "Resend attempts after a retriable error, by reason",
            ["sink", "reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "oomstream_sink_dead_lettered",
            "Dead letters acknowledged by the destination, by reason",
            ["sink", "reason"],
            registry=registry,
        )
        self.produce_latency = Histogram(
            "oomstream_sink_produce_latency_seconds",
            "Submit to acknowledgement, retries included",
            ["sink"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
        self.in_flight = Gauge(
            "oomstream_sink_in_flight",
            "Events submitted and not yet acknowledged or failed",
            ["sink"],
            registry=registry,
        )


# One set of collectors per registry: registering the same names twice raises, and several sinks
# (or tests) in one process share a registry.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, SinkMetrics] = weakref.WeakKeyDictionary()


def sink_metrics(registry: CollectorRegistry | None = None) -> SinkMetrics:
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    metrics = _METRICS.get(registry)
    if metrics is None:
        metrics = _METRICS[registry] = SinkMetrics(registry)
    return metrics


class Sink(abc.ABC):
    """Base class: lifecycle, result reporting and the dead-letter entry point."""

    def __init__(
        self,
        *,
        name: str,
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self._on_delivery = on_delivery
        self.metrics = sink_metrics(registry)
        self._m_latency = self.metrics.produce_latency.labels(name)
        self._m_in_flight = self.metrics.in_flight.labels(name)

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and verify the destination; raises FatalSinkError with the setting at fault."""

    @abc.abstractmethod
    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        """Hand over one event. Waits only for capacity; the outcome arrives via the callback."""

    @abc.abstractmethod
    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        """Hand over input that did not make an event (unparseable lines), with its positions."""

    @abc.abstractmethod
    async def flush(self, timeout_seconds: float | None = None) -> None:
        """Wait until every submitted item has a result (and is durable, where that applies)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush within a bounded time, report FAILED for anything still open, release resources."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _report(self, result: DeliveryResult) -> None:
        if result.status is not DeliveryStatus.FAILED:
            self._m_latency.observe(result.latency_seconds)
        callback = self._on_delivery
        if callback is None:
            return
        try:
            callback(result)
        except Exception:
            # A broken callback must not stall delivery of everything else.
            log.exception("%s sink: delivery callback raised for event %s", self.name, result.event_id)
