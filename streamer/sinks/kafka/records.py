"""What the Kafka sink writes per event: the record key, the headers, and its bookkeeping objects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from parsers.events import SCHEMA_VERSION, AnyEvent, K8sEvent, OomEvent, event_to_json
from parsers.telemetry import Tally
from streamer.kafka.options import KafkaOptions
from streamer.sinks.base import (
    DEAD_LETTER_TELEMETRY,
    DEAD_LETTER_TYPE,
    DEAD_LETTER_VERSION,
    REASON_PARTIAL_REPORT,
    DeadLetter,
    dead_letter_to_json,
)

CONTENT_TYPE = b"application/json"


def _pod_uid(event: AnyEvent) -> str | None:
    if isinstance(event, OomEvent):
        return event.cgroup.pod_uid
    if isinstance(event, K8sEvent):
        return event.pod_uid
    return event.kubernetes.pod_uid if event.kubernetes is not None else None


def _container_id(event: AnyEvent) -> str | None:
    if isinstance(event, OomEvent):
        return event.cgroup.container_id
    if isinstance(event, K8sEvent):
        return event.container_id
    return event.kubernetes.container_id if event.kubernetes is not None else None


# Kubernetes signals and incidents have no kernel facts: those getters give None and the chain
# moves on (to host), so every signal of one pod still lands on that pod's partition.
KEY_GETTERS: dict[str, Callable[[AnyEvent], str | None]] = {
    "pod_uid": _pod_uid,
    "container_id": _container_id,
    "host": lambda e: e.host,
    "boot_id": lambda e: e.boot_id if isinstance(e, OomEvent) else None,
    "oom_memcg": lambda e: e.cgroup.oom_memcg if isinstance(e, OomEvent) else None,
    "task_memcg": lambda e: e.cgroup.task_memcg if isinstance(e, OomEvent) else None,
    "event_id": lambda e: e.event_id,
}


def select_key(event: AnyEvent, key_fields: Sequence[str]) -> bytes | None:
    """The first present field of the chain; None (any partition) when none is."""
    for name in key_fields:
        value = KEY_GETTERS[name](event)
        if value:
            return value.encode("utf-8", "surrogateescape")
    return None


def event_headers(
    event_id: str | None,
    host: bytes,
    *,
    dead_letter_reason: str | None = None,
    event_type: str = "oom_kill",
) -> list[tuple[str, bytes]]:
    if dead_letter_reason is None:
        headers = [
            ("schema_version", str(SCHEMA_VERSION).encode()),
            ("event_type", event_type.encode()),
        ]
    else:
        headers = [
            ("schema_version", str(DEAD_LETTER_VERSION).encode()),
            ("event_type", DEAD_LETTER_TYPE.encode()),
            ("dead_letter_reason", dead_letter_reason.encode()),
        ]
    headers.append(("content_type", CONTENT_TYPE))
    headers.append(("producer_host", host))
    if event_id is not None:
        headers.append(("event_id", event_id.encode()))
    return headers


class Unit:
    """One submitted event or dead letter: one or two records, one DeliveryResult."""

    __slots__ = (
        "dead_lettered",
        "event",
        "event_id",
        "failure",
        "finished",
        "letter_reason",
        "metadata",
        "positions",
        "refusal",
        "remaining",
        "started",
    )

    def __init__(self, event: AnyEvent | None, event_id: str | None, positions: tuple[object, ...]) -> None:
        self.event = event
        self.event_id = event_id
        self.positions = positions
        self.started = 0.0  # set when it gets its in-flight slot
        self.remaining = 0
        self.finished = False
        self.failure: tuple[str, str] | None = None  # (reason, error): not written anywhere
        self.refusal: tuple[str, str] | None = None  # (reason, error): events topic refused it for good
        self.letter_reason: str | None = None  # dead-letter-only unit: its reason
        self.dead_lettered = False
        self.metadata: tuple[str, int, int] | None = None  # topic, partition, offset of the main record


class Record:
    """One Kafka record of a unit; kept until acknowledged so that it can be resent."""

    __slots__ = (
        "dead_letter_reason",
        "generation",
        "headers",
        "isolated",
        "key",
        "reset_pending",
        "topic",
        "unit",
        "value",
        "waiter",
    )

    def __init__(
        self,
        unit: Unit,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        dead_letter_reason: str | None,
    ) -> None:
        self.unit = unit
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.dead_letter_reason = dead_letter_reason
        self.generation = 0  # of the producer it was last handed to
        self.reset_pending = False
        self.isolated = False  # send in a batch of its own (its batch was refused as too large)
        self.waiter: asyncio.Future[tuple[str, int, int]] | None = None  # set while a resend awaits it


class RecordMaker:
    """Builds the records of an event or a dead letter; the constant parts are prepared once."""

    def __init__(self, options: KafkaOptions, host: bytes) -> None:
        self.options = options
        self.host = host
        self._header_prefix = event_headers(None, host)
        self._key_getters = [KEY_GETTERS[name] for name in options.key_fields]
        # Leave room for the envelope's record overhead (key, headers, batch header).
        self._dead_letter_max_bytes = max(1024, options.max_request_size_bytes - 16 * 1024)
        # What the record size bound left out of dead letters (README "Bounds and what happens at them").
        self.bounds: Tally = DEAD_LETTER_TELEMETRY.tally()

    def for_event(self, unit: Unit, event: AnyEvent) -> list[Record]:
        """The event's record, and for a partial report its dead letter (``partial_events``)."""
        options = self.options
        key: bytes | None = None
        for getter in self._key_getters:
            value = getter(event)
            if value:
                key = value.encode("utf-8", "surrogateescape")
                break
        event_id = event.event_id
        partial = isinstance(event, OomEvent) and event.partial
        records: list[Record] = []
        if not (partial and options.partial_events == "dead_letter_only"):
            if event.type == "oom_kill":
                headers = [*self._header_prefix, ("event_id", event_id.encode())]
            else:
                headers = event_headers(event_id, self.host, event_type=event.type)
            records.append(Record(unit, options.events_topic, key, event_to_json(event), headers, None))
        else:
            unit.letter_reason = REASON_PARTIAL_REPORT
        if partial and options.dead_letter_topic:
            assert isinstance(event, OomEvent)
            letter = DeadLetter.from_event(event, REASON_PARTIAL_REPORT, event.partial_reason)
            records.append(self.dead_letter(unit, letter, key))
        return records

    def letter_key(self, letter: DeadLetter) -> bytes | None:
        """The key of a dead letter sent on its own: its event's, else its host."""
        key = select_key(letter.event, self.options.key_fields) if letter.event is not None else None
        if key is None and letter.host:
            key = letter.host.encode("utf-8", "surrogateescape")
        return key

    def dead_letter(self, unit: Unit, letter: DeadLetter, key: bytes | None) -> Record:
        value = dead_letter_to_json(
            letter,
            producer=self.host.decode("utf-8", "surrogateescape"),
            max_bytes=self._dead_letter_max_bytes,
            counts=self.bounds,
        )
        headers = event_headers(letter.event_id, self.host, dead_letter_reason=letter.reason)
        return Record(unit, self.options.dead_letter_topic, key, value, headers, letter.reason)
