"""Kubernetes objects from a Kafka topic (one JSON document per record value) as a ``SignalSource``.

Record values are what ``K8sObjectLinesSource`` reads from a file, one line each (a value holding
several newline-separated documents is read line by line): bare objects, watch events, exporter
envelopes; bad ones are counted the same way (``streamer.sources.k8s_objects.ObjectLineDecoder``).

Offsets: the consumer group's offsets are committed by hand (``enable_auto_commit=False``) and only
past settled records. A record is settled when it gave no signal (bad, tombstone, not a memory
signal, a repeat the tracker drops) or when every signal it gave has been ``acknowledged``. Per
partition the committed offset is the lowest unsettled record's offset (Kafka commits "the next
record to read"), or one past the last record read when all are settled. A restart of the same
group therefore reads again every record whose signals might not have reached the sink, and none
of those that did. Commits happen every ``commit_interval_seconds`` when the watermark moved, when
partitions are revoked (rebalance) and in ``aclose``.

Positions: ``Source(kind="k8s_kafka", format="k8s_json", position={"topic", "partition", "offset"})``.

Errors: start-up retries what ``streamer.kafka.classify_kafka_error`` calls retriable
(connection refused, no broker yet, timeouts) until ``connect_timeout_seconds``, then raises
``KafkaSourceError`` naming the bootstrap servers; fatal errors (authentication, authorization,
invalid topic) raise at once. While running, retriable fetch and commit errors are logged,
counted and retried; fatal ones end ``signals()`` with ``KafkaSourceError``.

A rebalance that takes a partition away drops its unsettled records: their acknowledgements are
ignored (``acks_unknown``), and the partition's new owner reads them again from the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from parsers.events import K8sEvent, Source
from parsers.telemetry import Count, Tally, Telemetry
from streamer.kafka import (
    Credentials,
    KafkaOptions,
    Startup,
    classify_kafka_error,
    connection_kwargs,
    describe_error,
    read_credentials_at_connect,
    security_kwargs,
)
from streamer.sources.base import SOURCE_TELEMETRY, ClosingSource, SourceError
from streamer.sources.files import MAX_LINE_BYTES
from streamer.sources.k8s_objects import FORMAT, OBJECT_LINES_TELEMETRY, ObjectLineDecoder, ObjectTracker

KAFKA_OBJECTS_TELEMETRY = (
    SOURCE_TELEMETRY
    + OBJECT_LINES_TELEMETRY
    + Telemetry(
        "kafka_objects",
        (
            Count("tombstones", "records without a value (compaction tombstones)"),
            Count("connect_retries", "connection attempts retried"),
            Count("fetch_errors", "fetches that failed"),
            Count("acks", "records acknowledged (their signals settled)"),
            Count("acks_unknown", "acknowledgements for records no longer owned"),
            Count("commits", "offset commits"),
            Count("commit_errors", "offset commits that failed"),
            Count("rebalances", "consumer group rebalances"),
            Count("revoked_unsettled", "records unsettled when their partition was revoked"),
        ),
    )
)

log = logging.getLogger("oomstream.sources.kafka_objects")

OffsetReset = Literal["earliest", "latest"]
KIND = "k8s_kafka"
POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 500
CLOSE_TIMEOUT_SECONDS = 10.0


class KafkaSourceError(SourceError):
    """The Kafka source cannot run; ``retriable``: the cause may go away (broker down) or not."""

    def __init__(self, message: str, *, retriable: bool, reason: str) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.reason = reason


@dataclass
class _Partition:
    """Offset bookkeeping of one assigned partition."""

    # record offset -> event ids of its signals not yet acknowledged; insertion order is offset
    # order (records are read in order), so the first key is the lowest unsettled record.
    pending: dict[int, set[str]] = field(default_factory=dict)
    next_offset: int | None = None  # one past the last record read
    committed: int | None = None  # what this process last committed

    def settled(self) -> int | None:
        """The offset to commit: every record below it is settled."""
        if self.pending:
            return next(iter(self.pending))
        return self.next_offset


class KafkaObjectsSource(ClosingSource):
    """Signals from Kubernetes objects in a Kafka topic; commits only past acknowledged signals."""

    def __init__(
        self,
        *,
        bootstrap_servers: Sequence[str],
        topic: str,
        group_id: str,
        node: str | None = None,
        tracker: ObjectTracker | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        client_id: str = "oomstream",
        connect_timeout_seconds: float = 30.0,
        commit_interval_seconds: float = 1.0,
        max_line_bytes: int = MAX_LINE_BYTES,
        consumer_options: dict[str, Any] | None = None,
        kafka: KafkaOptions | None = None,
    ) -> None:
        """``kafka``: the service's Kafka options, for security (TLS, SASL; secrets are read again
        at every connection); ``consumer_options``: further aiokafka consumer arguments."""
        if isinstance(bootstrap_servers, str):
            bootstrap_servers = [s for s in bootstrap_servers.split(",") if s.strip()]
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers is empty")
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(f"auto_offset_reset must be 'earliest' or 'latest', not {auto_offset_reset!r}")
        if not topic or not group_id:
            raise ValueError("topic and group_id are required")
        self.bootstrap_servers = tuple(s.strip() for s in bootstrap_servers)
        self.topic = topic
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.client_id = client_id
        self.connect_timeout_seconds = connect_timeout_seconds
        self.commit_interval_seconds = commit_interval_seconds
        self.name = f"k8s-kafka:{topic}"
        self.endless = True
        self.counts: Tally = KAFKA_OBJECTS_TELEMETRY.tally()
        self._decoder = ObjectLineDecoder(
            self.name, self.counts, tracker=tracker, node=node, max_line_bytes=max_line_bytes
        )
        self._consumer_options = dict(consumer_options or {})
        self._credentials = Credentials(kafka) if kafka is not None else None
        self._consumer: Any = None
        self._partitions: dict[int, _Partition] = {}
        self._dirty = False
        self._closed = False
        self._iterated = False
        self._committer: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()

    @property
    def tracker(self) -> ObjectTracker:
        return self._decoder.tracker

    @property
    def servers(self) -> str:
        return ",".join(self.bootstrap_servers)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and join the group (``signals()`` calls it if needed). Raises KafkaSourceError."""
        if self._consumer is not None:
            return
        if self._closed:
            raise KafkaSourceError(f"{self.name}: closed", retriable=False, reason="closed")
        deadline = time.monotonic() + self.connect_timeout_seconds
        backoff = 0.25
        while True:
            consumer = self._new_consumer()
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(consumer.start(), max(0.1, remaining))
            except Exception as error:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 5)
                klass = classify_kafka_error(error, topic_creation=False)
                remaining = deadline - time.monotonic()
                # aiokafka says only "Unable to bootstrap": a direct connection finds a TLS or SASL
                # mismatch, which no retry fixes (the shared start-up diagnosis of streamer.kafka).
                detail, misconfigured = await self._diagnose(error, max(0.5, min(5.0, remaining)))
                if misconfigured or not klass.retriable or remaining <= 0.05 or self._closed:
                    retriable = klass.retriable and not misconfigured
                    verdict = (
                        f"gave up after {self.connect_timeout_seconds:g} s (connect_timeout_seconds)"
                        if retriable
                        else "not retried"
                    )
                    raise KafkaSourceError(
                        f"{self.name}: cannot consume topic {self.topic!r} as group {self.group_id!r} "
                        f"from Kafka at {self.servers} ({klass.reason}, {verdict}): {detail}",
                        retriable=retriable,
                        reason="misconfigured" if misconfigured else klass.reason,
                    ) from error
                self.counts["connect_retries"] += 1
                log.info("%s: Kafka at %s not reachable yet (%s); retrying", self.name, self.servers, error)
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(2.0, backoff * 2)
                continue
            self._consumer = consumer
            break
        log.info("%s: consuming %s as group %s from %s", self.name, self.topic, self.group_id, self.servers)
        self._committer = asyncio.create_task(self._commit_loop(), name=f"{self.name} commits")

    async def _diagnose(self, error: BaseException, timeout: float) -> tuple[str, bool]:
        """(what went wrong, whether it is the security settings) for a failed start."""
        if self._credentials is None:
            return describe_error(error), False
        options = self._credentials.options
        startup = Startup(options, connection_kwargs(options, credentials=self._credentials), self.name)
        causes = await startup.diagnose(timeout)
        misconfigured = any(kind in ("authentication", "tls") for _, _, kind in causes)
        if not misconfigured:
            return describe_error(error), False
        return str(startup.error("connect", error, causes)), True

    def _new_consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        source = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                source._assigned(assigned)

        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "group_id": self.group_id,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": self.auto_offset_reset,
            "request_timeout_ms": max(1000, int(self.connect_timeout_seconds * 1000)),
        }
        if self._credentials is not None:
            options.update(security_kwargs(self._credentials.options, self._credentials))
        options.update(self._consumer_options)
        consumer = AIOKafkaConsumer(**options)
        if self._credentials is not None:
            read_credentials_at_connect(consumer, self._credentials)
        consumer.subscribe([self.topic], listener=Listener())
        return consumer

    async def aclose(self) -> None:
        """Commit what is settled, then leave the group and stop."""
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await asyncio.wait_for(self._commit(consumer), CLOSE_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("%s: final commit failed: %s", self.name, describe_error(error))
        try:
            await asyncio.wait_for(consumer.stop(), CLOSE_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("%s: stopping the consumer failed: %s", self.name, describe_error(error))
        self._partitions.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    # -- signals ---------------------------------------------------------------------------------
    async def signals(self) -> AsyncIterator[K8sEvent]:
        if self._iterated:
            raise RuntimeError(f"{self.name}: signals() can be iterated only once")
        self._iterated = True
        await self.start()
        from aiokafka.errors import ConsumerStoppedError

        backoff = 0.25
        while not self._closed:
            consumer = self._consumer
            if consumer is None:
                return
            try:
                batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS)
            except ConsumerStoppedError:
                return
            except Exception as error:
                if self._closed:
                    return
                klass = classify_kafka_error(error, topic_creation=False)
                self.counts["fetch_errors"] += 1
                if not klass.retriable:
                    raise KafkaSourceError(
                        f"{self.name}: consuming {self.topic!r} from {self.servers} failed "
                        f"({klass.reason}): {describe_error(error)}",
                        retriable=False,
                        reason=klass.reason,
                    ) from error
                log.warning("%s: fetch failed (%s); retrying", self.name, describe_error(error))
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.25
            if self._closed:
                return  # records read but not handed out stay unsettled: read again next time
            for tp, records in batches.items():
                state = self._partition(tp)
                for record in records:
                    if state is None or self._closed or self._partitions.get(tp.partition) is not state:
                        break  # revoked meanwhile: the new owner reads the rest
                    for event in self._take(state, record):
                        yield event

    def acknowledged(self, event: K8sEvent) -> None:
        """The sink has ``event``: when its record's signals are all acknowledged, it settles."""
        position = event.source.position or {}
        if self._closed or position.get("topic") != self.topic:
            self.counts["acks_unknown"] += 1
            return
        partition, offset = position.get("partition"), position.get("offset")
        state = self._partitions.get(partition) if isinstance(partition, int) else None
        if state is None or not isinstance(offset, int):
            self.counts["acks_unknown"] += 1  # a partition taken away by a rebalance
            return
        waiting = state.pending.get(offset)
        if waiting is None or event.event_id not in waiting:
            self.counts["acks_unknown"] += 1  # acknowledged twice, or its record was revoked and read again
            return
        self.counts["acks"] += 1
        waiting.discard(event.event_id)
        if not waiting:
            del state.pending[offset]
            self._dirty = True

    # -- records ---------------------------------------------------------------------------------
    def _partition(self, tp: Any) -> _Partition | None:
        state = self._partitions.get(tp.partition)
        if state is None and self._consumer is not None and tp in self._consumer.assignment():
            state = self._partitions[tp.partition] = _Partition()
        return state

    def _take(self, state: _Partition, record: Any) -> list[K8sEvent]:
        """The signals of one record, registered as pending before they are handed out."""
        counts = self.counts
        counts["records"] += 1
        offset: int = record.offset
        state.next_offset = offset + 1
        self._dirty = True
        value: bytes | None = record.value
        if value is None:
            counts["tombstones"] += 1
            return []
        where = f"{record.topic}/{record.partition}@{offset}"
        lines = value.splitlines() if b"\n" in value or b"\r" in value else [value]
        if not lines:
            counts["blank_lines"] += 1
            return []
        decoder = self._decoder
        objects = [obj for line in lines for obj in decoder.objects(line, where)]
        if not objects:
            return []
        source = Source(
            kind=KIND,
            format=FORMAT,
            position={"topic": record.topic, "partition": record.partition, "offset": offset},
        )
        events = decoder.signals(objects, source, where)
        if events:
            state.pending[offset] = {event.event_id for event in events}
        return events

    # -- commits ---------------------------------------------------------------------------------
    async def _commit_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.commit_interval_seconds)
            consumer = self._consumer
            if self._dirty and consumer is not None:
                try:
                    await self._commit(consumer)
                except Exception as error:  # logged and counted in _commit; the loop goes on
                    log.debug("%s: commit: %s", self.name, describe_error(error))

    async def _commit(self, consumer: Any, partitions: Sequence[int] | None = None) -> None:
        """Commit the settled watermark of ``partitions`` (default: all) where it moved."""
        from aiokafka.structs import TopicPartition

        async with self._commit_lock:
            self._dirty = False
            chosen = [
                (partition, state, state.settled())
                for partition, state in self._partitions.items()
                if partitions is None or partition in partitions
            ]
            moved = [
                (partition, state, offset)
                for partition, state, offset in chosen
                if offset is not None and offset != state.committed
            ]
            if not moved:
                return
            offsets = {TopicPartition(self.topic, partition): offset for partition, _, offset in moved}
            try:
                await consumer.commit(offsets)
            except Exception as error:
                self._dirty = True
                self.counts["commit_errors"] += 1
                klass = classify_kafka_error(error, topic_creation=False)
                log.warning(
                    "%s: committing offsets %s failed (%s%s): %s",
                    self.name,
                    {tp.partition: offset for tp, offset in offsets.items()},
                    klass.reason,
                    ", will retry" if klass.retriable else "",
                    describe_error(error),
                )
                raise
            for _, state, offset in moved:
                state.committed = offset
            self.counts["commits"] += 1

    async def _revoked(self, revoked: Any) -> None:
        mine = [tp.partition for tp in revoked if tp.topic == self.topic]
        self.counts["rebalances"] += 1
        consumer = self._consumer
        if consumer is not None and mine:
            try:
                await asyncio.wait_for(self._commit(consumer, mine), CLOSE_TIMEOUT_SECONDS)
            except Exception as error:
                log.warning("%s: commit on revocation failed: %s", self.name, describe_error(error))
        for partition in mine:
            state = self._partitions.pop(partition, None)
            if state is not None and state.pending:
                self.counts["revoked_unsettled"] += len(state.pending)

    def _assigned(self, assigned: Any) -> None:
        for tp in assigned:
            if tp.topic == self.topic and tp.partition not in self._partitions:
                self._partitions[tp.partition] = _Partition()
        log.info(
            "%s: assigned partitions %s",
            self.name,
            sorted(tp.partition for tp in assigned if tp.topic == self.topic),
        )
