"""``KafkaSink``: idempotent, acks=all, compressed, bounded in flight, with a dead-letter topic.

``submit`` builds the event's records (``records.RecordMaker``), waits only while
``max_in_flight`` events are unacknowledged, and hands the records to the ``batching.Batcher``,
which appends them to aiokafka batch builders and sends each full or lingered batch through the
idempotent ``AIOKafkaProducer``. ``delivery.Delivery`` turns acknowledgements and errors into one
``DeliveryResult`` per event (resends, dead letters, the delivery deadline). Partitioning is
Kafka's default (murmur2 of the key, as the Java client does), so a pod's events share one
partition and keep their order.

Partial events (``event.partial``): by default (``partial_events="both"``) the event goes to the
events topic (flagged partial) AND a dead letter with the raw lines goes to the dead-letter topic;
the positions are acknowledged only when both are. ``"dead_letter_only"`` sends just the dead letter.

A resend can reorder a key's events and, after a broker crash, duplicate one; consumers dedupe by
``event_id`` (deterministic), which is also sent as a header.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from parsers.events import AnyEvent
from streamer.kafka import (
    Credentials,
    KafkaOptions,
    Startup,
    check_compression,
    connection_kwargs,
    describe_error,
    read_credentials_at_connect,
)
from streamer.sinks.base import (
    DeadLetter,
    DeliveryCallback,
    DeliveryResult,
    FatalSinkError,
    RetriableSinkError,
    Sink,
    SinkClosedError,
    producer_host,
)
from streamer.sinks.kafka.batching import Batcher
from streamer.sinks.kafka.delivery import Delivery
from streamer.sinks.kafka.records import RecordMaker, Unit

log = logging.getLogger("oomstream.sinks.kafka")
ProducerFactory = Callable[[dict[str, Any]], Any]


class KafkaSink(Sink):
    """Publishes events to Kafka; see the module docstring for the delivery model."""

    def __init__(
        self,
        options: KafkaOptions,
        *,
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
        name: str = "kafka",
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        super().__init__(name=name, on_delivery=on_delivery, registry=registry)
        options.require_brokers()
        self.options = options
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._credentials = Credentials(options)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reset_lock = asyncio.Lock()
        self._started = self._closing = self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        host = (options.producer_host or producer_host()).encode("utf-8", "surrogateescape")
        self._records = RecordMaker(options, host)
        self.bounds = self._records.bounds  # what the record size bound left out of dead letters
        self._delivery = Delivery(
            options,
            name,
            self.metrics,
            self._deliver_result,
            self._records,
            self._spawn,
            self._reset_producer,
        )
        self._batcher = Batcher(options, lambda: self._producer, self._delivery, self._spawn)
        self._delivery.enqueue = self._batcher.enqueue
        self._m_in_flight.set_function(lambda: len(self._delivery.units))  # read at scrape time

    @property
    def config(self) -> KafkaOptions:
        return self.options

    @property
    def in_flight(self) -> int:
        return len(self._delivery.units)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        if self._closed:
            raise SinkClosedError(f"{self.name} sink: start after close")
        options = self.options
        check_compression(options)
        conn = connection_kwargs(options, credentials=self._credentials)
        startup = Startup(options, conn, f"{self.name} sink")
        if self._producer_factory is None:
            await startup.prepare_topics([options.events_topic, options.dead_letter_topic])
        producer = self._make_producer()
        await startup.bounded(producer.start(), "producer start", stop=producer.stop)
        self._producer = producer
        for topic in (options.events_topic, options.dead_letter_topic):
            if topic:
                await startup.bounded(self._batcher.refresh_partitions(topic), f"metadata of topic {topic!r}")
        self._started = True
        self._watchdog = asyncio.get_running_loop().create_task(self._delivery.expire_overdue())

    async def flush(self, timeout_seconds: float | None = None) -> None:
        self._batcher.send_open()  # lingering batches would go anyway; flush need not wait for them
        try:
            await asyncio.wait_for(self._delivery.idle.wait(), timeout_seconds)
        except TimeoutError:
            raise RetriableSinkError(
                f"{self.name} sink: {self.in_flight} event(s) still unacknowledged after "
                f"{timeout_seconds}s (brokers {self.options.servers})"
            ) from None

    async def close(self) -> None:
        if self._closed:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
        try:
            if self._started:
                await self.flush(self.options.close_timeout_seconds)
        except RetriableSinkError as error:
            log.warning("%s", error)
        finally:
            self._closing = self._closed = self._delivery.closing = True
            for record in self._batcher.drop_open():
                self._delivery.record_closed(record, "sink closed before the record was sent")
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._delivery.fail_open("closed", "sink closed before the broker acknowledged")
            if self._producer is not None:
                await self._stop_producer(self._producer)
                self._producer = None

    # -- submission --------------------------------------------------------------------------------
    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        if not self._started or self._closing:
            self._check_open()
        unit = Unit(event, event.event_id, tuple(positions))
        await self._delivery.admit(unit, self._records.for_event(unit, event))
        if self._batcher.yield_due:
            # A full batch went out: let the sender run even if the caller never waits.
            self._batcher.yield_due = False
            await asyncio.sleep(0)

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        self._check_open()
        if not self.options.dead_letter_topic:
            raise self.options.error("dead_letter_topic", f"is empty: nowhere to send {letter.reason!r}")
        unit = Unit(letter.event, letter.event_id, tuple(positions))
        unit.letter_reason = letter.reason
        record = self._records.dead_letter(unit, letter, self._records.letter_key(letter))
        await self._delivery.admit(unit, [record])

    def _check_open(self) -> None:
        if not self._started or self._closing:
            state = "not started" if not self._started else "closed"
            raise SinkClosedError(f"{self.name} sink: submit while {state}")

    def _deliver_result(self, result: DeliveryResult) -> None:
        callback = self._on_delivery
        if callback is None:
            return
        try:
            callback(result)
        except Exception:
            # A broken callback must not stall delivery of everything else.
            log.exception("%s sink: delivery callback raised for event %s", self.name, result.event_id)

    # -- the producer ------------------------------------------------------------------------------
    def _make_producer(self) -> Any:
        options = self.options
        kwargs = connection_kwargs(options, credentials=self._credentials)
        kwargs.update(
            acks="all",
            enable_idempotence=True,
            compression_type=None if options.compression == "none" else options.compression,
            linger_ms=options.linger_ms,
            max_batch_size=options.batch_size_bytes,
            max_request_size=options.max_request_size_bytes,
        )
        if self._producer_factory is not None:
            return self._producer_factory(kwargs)
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**kwargs)
        read_credentials_at_connect(producer, self._credentials)
        return producer

    async def _reset_producer(self, generation: int) -> None:
        """Replace the producer (new producer id) after its sequence state broke."""
        async with self._reset_lock:
            if generation != self._batcher.generation or self._closing:
                return  # another record already replaced that producer
            log.warning(
                "%s sink: idempotent producer state lost (sequence/producer id); starting a new producer",
                self.name,
            )
            producer = self._make_producer()
            startup = Startup(self.options, {}, f"{self.name} sink")
            await startup.bounded(producer.start(), "producer restart", stop=producer.stop)
            old, self._producer = self._producer, producer
            self._batcher.generation += 1
            self._spawn(self._stop_producer(old))

    async def _stop_producer(self, producer: Any) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout=min(10.0, self.options.close_timeout_seconds))
        except Exception as error:
            log.warning("%s sink: producer did not stop cleanly: %s", self.name, describe_error(error))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


__all__ = ["FatalSinkError", "KafkaSink"]
