"""Delivery bookkeeping: the in-flight bound, retries, dead-lettering refusals, one result per event.

A unit (one submitted event or dead letter) holds one or two records and gets exactly one
``DeliveryResult``: ACKED when every record was acknowledged, DEAD_LETTERED when the events topic
refused it for good and its dead letter was acknowledged instead, FAILED when it is not durably
written anywhere. ``delivery_timeout_seconds`` bounds the time from submit to that result,
retries included: the retry loop stops at the deadline and a watchdog fails what is still open
(aiokafka can keep a batch queued for a node that never comes back, without an error).

Retriable errors are resent with exponential backoff and jitter (tenacity), at most
``retry_max_attempts`` times; errors meaning the idempotent producer's sequence state is broken
make the sink replace its producer first. Fatal errors send a dead letter with the reason.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from streamer.kafka.errors import (
    BatchTooLarge,
    ErrorClass,
    classify_kafka_error,
    describe_error,
    is_too_large,
)
from streamer.kafka.options import KafkaOptions
from streamer.logging_setup import RateLimiter
from streamer.sinks.base import (
    REASON_PARTIAL_REPORT,
    DeadLetter,
    DeliveryResult,
    DeliveryStatus,
    SinkClosedError,
    SinkMetrics,
)
from streamer.sinks.kafka.records import Record, RecordMaker, Unit

log = logging.getLogger("oomstream.sinks.kafka")
ACKED, DEAD_LETTERED, FAILED = DeliveryStatus.ACKED, DeliveryStatus.DEAD_LETTERED, DeliveryStatus.FAILED


class LogLimiter:
    """At most one log line per reason per interval, with the count of what was suppressed.

    The sink limits its own lines because ``oomstream publish`` installs no logging handler (so no
    ``RateLimitFilter``); the counting is ``logging_setup.RateLimiter``'s.
    """

    def __init__(self, interval_seconds: float = 10.0) -> None:
        self._limiter = RateLimiter(interval_seconds)

    def log(self, level: int, reason: str, message: str, *args: object) -> None:
        suppressed = self._limiter.check(reason)
        if suppressed is None:
            return
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        log.log(level, message, *args)


class Delivery:
    def __init__(
        self,
        options: KafkaOptions,
        name: str,
        metrics: SinkMetrics,
        report: Callable[[DeliveryResult], None],
        records: RecordMaker,
        spawn: Callable[[Awaitable[None]], None],
        reset_producer: Callable[[int], Awaitable[None]],
    ) -> None:
        self.options = options
        self.name = name
        self.metrics = metrics
        self._report = report
        self._records = records
        self._spawn = spawn
        self._reset_producer = reset_producer
        self.enqueue: Callable[[Record], None] = lambda record: None  # set to the batcher's
        self.closing = False
        self.units: set[Unit] = set()
        # A full set makes submit wait on _room (a plain counter check per event is cheaper than a
        # semaphore).
        self._max_in_flight = options.max_in_flight
        self._room = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self._limiter = LogLimiter()
        self._m_sent = metrics.events_sent.labels(name, options.events_topic)
        self._m_latency = metrics.produce_latency.labels(name)
        self._timeout = options.delivery_timeout_seconds

    # -- admission ---------------------------------------------------------------------------------
    async def admit(self, unit: Unit, records: list[Record]) -> None:
        """Wait for an in-flight slot, then hand the records to the batcher."""
        units = self.units
        while len(units) >= self._max_in_flight:
            self._room.clear()
            await self._room.wait()
            if self.closing:
                raise SinkClosedError(f"{self.name} sink: submit while closed")
        unit.started = time.perf_counter()  # latency excludes the wait for an in-flight slot
        unit.remaining = len(records)
        units.add(unit)
        self.idle.clear()
        enqueue = self.enqueue
        for record in records:
            enqueue(record)

    # -- outcomes reported by the batcher ---------------------------------------------------------
    def batch_acked(self, records: list[Record], topic: str, partition: int, base_offset: int) -> None:
        now = time.perf_counter()
        latencies: list[float] = []
        sent = 0
        for index, record in enumerate(records):
            metadata = (topic, partition, base_offset + index)
            if record.dead_letter_reason is None:
                sent += 1
            if record.waiter is not None:  # a resend: its retry loop takes the result
                if not record.waiter.done():
                    record.waiter.set_result(metadata)
                continue
            unit = record.unit
            if (
                record.dead_letter_reason is None
                and unit.remaining == 1
                and not (unit.finished or unit.dead_lettered or unit.failure)
            ):
                # The common case (one record, acknowledged): straight to its result.
                unit.remaining = 0
                unit.finished = True
                self.units.discard(unit)
                latency = now - unit.started
                latencies.append(latency)
                self._report(
                    DeliveryResult(
                        unit.event_id,
                        unit.positions,
                        ACKED,
                        None,
                        None,
                        topic,
                        partition,
                        base_offset + index,
                        latency,
                        False,
                    )
                )
                continue
            self.record_ok(record, metadata)
        if sent:
            self._m_sent.inc(sent)
        if latencies:
            _observe_many(self._m_latency, latencies)
        self._after_finish()

    def batch_failed(self, records: list[Record], error: BaseException) -> None:
        for record in records:
            if len(records) > 1 and is_too_large(error):
                # The broker refused the batch, not necessarily each record: resend them alone.
                record.isolated = True
                if record.waiter is not None and not record.waiter.done():
                    record.waiter.set_exception(BatchTooLarge(describe_error(error)))
                else:
                    self.enqueue(record)
            else:
                self.record_failed(record, error)

    def record_failed(self, record: Record, error: BaseException) -> None:
        if record.waiter is not None:
            if not record.waiter.done():
                record.waiter.set_exception(error)
            return
        if record.unit.finished:
            return
        klass = classify_kafka_error(error, topic_creation=self.options.topic_creation)
        if klass.retriable and not self.closing:
            record.reset_pending = klass.reset_producer
            self._spawn(self._retry(record, error, klass))
        else:
            self._final_error(record, error, klass)

    def record_closed(self, record: Record, message: str) -> None:
        self._record_done_badly(record, "closed", message)
        self._after_finish()

    # -- retries -----------------------------------------------------------------------------------
    async def _retry(self, record: Record, first_error: BaseException, first: ErrorClass) -> None:
        options = self.options
        deadline = record.unit.started + self._timeout
        self._note_retry(record, first_error, first)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(options.retry_max_attempts) | _past(deadline),
            # Exponential from the initial backoff, plus up to one initial backoff of jitter so that
            # thousands of records failed by the same outage do not resend in lockstep.
            wait=wait_exponential(
                multiplier=options.retry_initial_backoff_seconds, max=options.retry_max_backoff_seconds
            )
            + wait_random(0, options.retry_initial_backoff_seconds),
            retry=retry_if_exception(self._retriable),
            before_sleep=functools.partial(self._before_sleep, record),
            reraise=True,
        )
        try:
            await asyncio.sleep(options.retry_initial_backoff_seconds)
            metadata: Any = None
            async for attempt in retrying:
                with attempt:
                    metadata = await self._attempt(record)
        except asyncio.CancelledError:
            self._record_done_badly(record, "closed", f"sink closed while retrying after {first.reason}")
            raise
        except Exception as error:
            self._final_error(
                record, error, classify_kafka_error(error, topic_creation=options.topic_creation)
            )
        else:
            self.record_ok(record, metadata)
            self._after_finish()

    async def _attempt(self, record: Record) -> Any:
        if record.reset_pending:
            await self._reset_producer(record.generation)
            record.reset_pending = False
        record.waiter = asyncio.get_running_loop().create_future()
        try:
            self.enqueue(record)
            return await record.waiter
        except Exception as error:
            klass = classify_kafka_error(error, topic_creation=self.options.topic_creation)
            if klass.reset_producer:
                record.reset_pending = True
            if isinstance(error, BatchTooLarge):
                record.isolated = True
            raise
        finally:
            record.waiter = None

    def _retriable(self, error: BaseException) -> bool:
        klass = classify_kafka_error(error, topic_creation=self.options.topic_creation)
        return klass.retriable and not self.closing

    def _before_sleep(self, record: Record, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            self._note_retry(
                record, error, classify_kafka_error(error, topic_creation=self.options.topic_creation)
            )

    def _note_retry(self, record: Record, error: BaseException, klass: ErrorClass) -> None:
        self.metrics.retries.labels(self.name, klass.reason).inc()
        self._limiter.log(
            logging.WARNING,
            klass.reason,
            "%s sink: %s to %s (%s), resending with backoff: %s",
            self.name,
            klass.reason,
            record.topic,
            self.options.servers,
            describe_error(error),
        )

    # -- per-record outcomes -----------------------------------------------------------------------
    def record_ok(self, record: Record, metadata: tuple[str, int, int]) -> None:
        unit = record.unit
        if unit.finished:
            return
        if record.dead_letter_reason is not None:
            self.metrics.dead_lettered.labels(self.name, record.dead_letter_reason).inc()
            unit.dead_lettered = True
            if unit.letter_reason is not None or unit.refusal is not None:
                unit.metadata = metadata
        else:
            unit.metadata = metadata  # counted in events_sent per batch
        unit.remaining -= 1
        if unit.remaining <= 0:
            self._finish(unit)

    def _final_error(self, record: Record, error: BaseException, klass: ErrorClass) -> None:
        unit = record.unit
        if unit.finished:
            return
        self.metrics.events_failed.labels(self.name, klass.reason).inc()
        message = describe_error(error)
        options = self.options
        if (
            not klass.retriable
            and record.dead_letter_reason is None
            and unit.event is not None
            and options.dead_letter_topic
            and not self.closing
        ):
            self._limiter.log(
                logging.ERROR,
                "refused:" + klass.reason,
                "%s sink: event %s refused by %s (%s): %s; sending it to dead-letter topic %s",
                self.name,
                unit.event_id,
                record.topic,
                klass.reason,
                message,
                options.dead_letter_topic,
            )
            unit.refusal = (klass.reason, message)
            letter = DeadLetter.from_event(unit.event, klass.reason, message)
            # The dead letter replaces the refused record: unit.remaining is unchanged.
            self.enqueue(self._records.dead_letter(unit, letter, record.key))
            return
        self._limiter.log(
            logging.WARNING if klass.retriable else logging.ERROR,
            "failed:" + klass.reason,
            "%s sink: giving up on %s to %s (%s): %s",
            self.name,
            unit.event_id,
            record.topic,
            klass.reason,
            message,
        )
        self._record_done_badly(record, klass.reason, message)
        self._after_finish()

    def _record_done_badly(self, record: Record, reason: str, message: str) -> None:
        unit = record.unit
        if unit.finished:
            return
        unit.failure = (reason, message)
        unit.remaining -= 1
        if unit.remaining <= 0:
            self._finish(unit)

    def fail_unit(self, unit: Unit, reason: str, message: str) -> None:
        if unit.finished:
            return
        unit.failure = (reason, message)
        unit.remaining = 0
        self.metrics.events_failed.labels(self.name, reason).inc()
        self._finish(unit)
        self._after_finish()

    def _finish(self, unit: Unit) -> None:
        unit.finished = True
        self.units.discard(unit)
        topic = partition = offset = None
        if unit.metadata is not None:
            topic, partition, offset = unit.metadata
        latency = time.perf_counter() - unit.started
        if unit.failure is not None:
            status, (reason, error) = FAILED, unit.failure
        elif unit.refusal is not None:
            status, (reason, error) = DEAD_LETTERED, unit.refusal
        elif unit.letter_reason is not None:
            status, reason, error = DEAD_LETTERED, unit.letter_reason, None
        else:
            status, reason, error = ACKED, None, None
            if unit.dead_lettered:
                reason = REASON_PARTIAL_REPORT
        if status is not FAILED:
            self._m_latency.observe(latency)
        self._report(
            DeliveryResult(
                unit.event_id,
                unit.positions,
                status,
                reason=reason,
                error=error,
                topic=topic,
                partition=partition,
                offset=offset,
                latency_seconds=latency,
                dead_lettered=unit.dead_lettered,
            )
        )

    def _after_finish(self) -> None:
        units = self.units
        if len(units) < self._max_in_flight and not self._room.is_set():
            self._room.set()
        if not units:
            self.idle.set()

    # -- the deadline ------------------------------------------------------------------------------
    async def expire_overdue(self) -> None:
        """Fail what has no outcome ``delivery_timeout_seconds`` after it was submitted."""
        timeout = self._timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.perf_counter()
            for unit in [unit for unit in self.units if now - unit.started > timeout]:
                self.fail_unit(
                    unit,
                    "delivery_timeout",
                    f"not acknowledged within delivery_timeout_seconds={timeout:g} (retries included)",
                )

    def fail_open(self, reason: str, message: str) -> None:
        for unit in list(self.units):
            self.fail_unit(unit, reason, message)
        self._room.set()  # submitters waiting for room see the sink closing


class _past(stop_base):
    """Stop once the unit's delivery deadline has passed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.perf_counter() >= self.deadline


def _observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe`` for many values at once: one bucket update per bucket, not per value.

    prometheus_client's Histogram child keeps non-cumulative bucket counters (``_buckets``) for its
    ``_upper_bounds`` and a ``_sum``; if that ever changes, observe one by one.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts: dict[int, int] = {}
    for value in values:
        index = bisect.bisect_left(bounds, value)
        counts[index] = counts.get(index, 0) + 1
    for index, count in counts.items():
        buckets[index].inc(count)
    total.inc(sum(values))
