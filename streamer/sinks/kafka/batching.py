"""Batching: records appended to aiokafka's own batch builders, one open batch per topic-partition.

Each full or lingered batch is closed and handed to ``producer.send_batch``. Per record this costs
one C-level append instead of aiokafka's per-record path (a ``send()`` coroutine, a pure-Python
murmur2, a future and a ``RecordMetadata``); the producer underneath is the same idempotent
acks=all one, with its retries and per-partition ordering. ``make bench`` measures the difference
against plain ``send()`` (README, "Speed").
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from streamer.kafka.options import KafkaOptions
from streamer.sinks.kafka.records import Record

PARTITIONS_REFRESH_SECONDS = 30.0


class Outcomes(Protocol):
    """Where the batcher reports what happened to the records it sent (``delivery.Delivery``)."""

    def batch_acked(self, records: list[Record], topic: str, partition: int, base_offset: int) -> None: ...

    def batch_failed(self, records: list[Record], error: BaseException) -> None: ...

    def record_failed(self, record: Record, error: BaseException) -> None: ...

    def record_closed(self, record: Record, message: str) -> None: ...


class Partitioner:
    """Kafka's default keyed partitioning (murmur2, as the Java client), with the hash cached.

    aiokafka's murmur2 is pure Python and costs more than the rest of a send; keys repeat (one pod
    sends many events), so the hash is computed once per key.
    """

    def __init__(self, max_keys: int = 65_536) -> None:
        from aiokafka.partitioner import murmur2

        self._murmur2 = murmur2
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, partitions: int) -> int:
        if key is None:
            return random.randrange(partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = self._murmur2(key) & 0x7FFFFFFF
        return hashed % partitions


class _Batch:
    __slots__ = ("builder", "due", "partition", "records", "timer", "topic")

    def __init__(self, builder: Any, topic: str, partition: int) -> None:
        self.builder = builder
        self.topic = topic
        self.partition = partition
        self.records: list[Record] = []
        self.timer: asyncio.Handle | None = None
        self.due = False  # lingered long enough; waits for its partition's batch in flight


class Batcher:
    def __init__(
        self,
        options: KafkaOptions,
        producer: Callable[[], Any],
        outcomes: Outcomes,
        spawn: Callable[[Any], None],
    ) -> None:
        self.options = options
        self._producer = producer  # the current producer (it is replaced after a sequence error)
        self._outcomes = outcomes
        self._spawn = spawn
        self._linger_seconds = options.linger_ms / 1000
        self._max_record_bytes = options.max_request_size_bytes
        self._partitioner = Partitioner()
        self._partition_counts: dict[str, int] = {}
        self._partitions_checked: dict[str, float] = {}
        self._open: dict[tuple[str, int], _Batch] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        # Batches handed to the producer and not yet answered, per partition. The idempotent
        # producer sends one batch per partition at a time, so while one is in flight the next
        # keeps filling past linger_ms (as aiokafka's own accumulator does) instead of queueing
        # many small batches: fewer requests, better compression, less CPU per record.
        self._busy: dict[tuple[str, int], int] = {}
        self.generation = 0  # bumped by the sink when it replaces the producer
        self.yield_due = False  # a batch went out: the submitter should let the sender run

    async def refresh_partitions(self, topic: str) -> None:
        partitions = await self._producer().partitions_for(topic)
        if partitions:
            self._partition_counts[topic] = max(partitions) + 1

    def enqueue(self, record: Record) -> None:
        size = len(record.value) + (len(record.key) if record.key else 0) + 64 * len(record.headers)
        if size > self._max_record_bytes:
            # aiokafka's send() refuses these before sending; batches need the same check here.
            from aiokafka.errors import MessageSizeTooLargeError

            self._outcomes.record_failed(
                record,
                MessageSizeTooLargeError(
                    f"the record is about {size} bytes, more than max_request_size_bytes="
                    f"{self._max_record_bytes}"
                ),
            )
            return
        topic = record.topic
        partitions = self._partition_counts.get(topic)
        if partitions is None:
            self._spawn(self._enqueue_after_metadata(record))
            return
        partition = self._partitioner(record.key, partitions)
        if record.isolated:
            batch = _Batch(self._producer().create_batch(), topic, partition)
            self._append(batch, record)
            self._send(batch)
            return
        batch = self._open.get((topic, partition)) or self._open_batch(topic, partition)
        if not self._append(batch, record):
            self._send(batch)  # full
            batch = self._open_batch(topic, partition)
            self._append(batch, record)  # an empty batch takes any record

    def send_open(self) -> None:
        """Send every open batch now instead of after linger_ms (flush)."""
        for batch in list(self._open.values()):
            self._send(batch)

    def _lingered(self, batch: _Batch) -> None:
        batch.timer = None
        if self._busy.get((batch.topic, batch.partition)):
            batch.due = True  # sent when the batch in flight is answered
        else:
            self._send(batch)

    def drop_open(self) -> list[Record]:
        """Forget the open batches (close); returns their records, never sent."""
        records: list[Record] = []
        for batch in self._open.values():
            if batch.timer is not None:
                batch.timer.cancel()
            records.extend(batch.records)
        self._open.clear()
        return records

    @staticmethod
    def _append(batch: _Batch, record: Record) -> bool:
        if (
            batch.builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)
            is None
        ):
            return False
        batch.records.append(record)
        return True

    def _open_batch(self, topic: str, partition: int) -> _Batch:
        batch = _Batch(self._producer().create_batch(), topic, partition)
        self._open[(topic, partition)] = batch
        loop = asyncio.get_running_loop()
        if self._linger_seconds > 0:
            batch.timer = loop.call_later(self._linger_seconds, self._lingered, batch)
        else:
            batch.timer = loop.call_soon(self._lingered, batch)  # what arrives in this tick goes along
        return batch

    def _send(self, batch: _Batch) -> None:
        if self._open.get((batch.topic, batch.partition)) is batch:
            del self._open[(batch.topic, batch.partition)]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if not batch.records:
            return
        batch.builder.close()
        self.yield_due = True
        self._spawn(self._deliver(batch))

    async def _deliver(self, batch: _Batch) -> None:
        records = batch.records
        generation = self.generation
        for record in records:
            record.generation = generation
        tp = (batch.topic, batch.partition)
        lock = self._locks.get(tp)
        if lock is None:
            lock = self._locks[tp] = asyncio.Lock()
        self._busy[tp] = self._busy.get(tp, 0) + 1
        try:
            # FIFO lock: batches of one partition enter aiokafka's queue in the order they were made.
            async with lock:
                future = await self._producer().send_batch(
                    batch.builder, batch.topic, partition=batch.partition
                )
            metadata = await future
        except asyncio.CancelledError:
            for record in records:
                self._outcomes.record_closed(record, "sink closed before the broker acknowledged")
            raise
        except Exception as error:
            self._outcomes.batch_failed(records, error)
            return
        finally:
            self._answered(tp)
        self._outcomes.batch_acked(records, batch.topic, int(metadata.partition), int(metadata.offset))
        now = time.monotonic()
        if now - self._partitions_checked.get(batch.topic, 0.0) > PARTITIONS_REFRESH_SECONDS:
            # Partitions can be added to a topic; keyed placement follows the new count like Java's.
            self._partitions_checked[batch.topic] = now
            await self.refresh_partitions(batch.topic)

    def _answered(self, tp: tuple[str, int]) -> None:
        busy = self._busy[tp] - 1
        self._busy[tp] = busy
        if busy == 0:
            waiting = self._open.get(tp)
            if waiting is not None and waiting.due:
                self._send(waiting)

    async def _enqueue_after_metadata(self, record: Record) -> None:
        try:
            await asyncio.wait_for(
                self.refresh_partitions(record.topic), self.options.request_timeout_seconds
            )
        except asyncio.CancelledError:
            self._outcomes.record_closed(record, "sink closed while waiting for topic metadata")
            raise
        except Exception as error:
            self._outcomes.record_failed(record, error)
            return
        if record.topic not in self._partition_counts:
            from aiokafka.errors import UnknownTopicOrPartitionError

            self._outcomes.record_failed(record, UnknownTopicOrPartitionError(record.topic))
            return
        self.enqueue(record)
