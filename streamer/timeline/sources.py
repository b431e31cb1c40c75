"""Where timeline events come from: JSON-lines files / stdin, or a time range of the Kafka topic.

Kafka is read without a consumer group (nothing committed) unless one is asked for, and never
from the start of the topic: each partition is positioned with ``offsets_for_times`` at the
first record published at or after the range start, and read up to the first record published
after the range end plus ``max_publish_delay`` (a kill is published after it happens, sometimes
much later when the spool replays), or up to the end offsets taken when reading began.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from streamer.errors import CliError
from streamer.kafka import KafkaOptions

FETCH_TIMEOUT_MS = 500
# A record in the range must reach the reader within this long of the last poll that returned data.
IDLE_GIVE_UP_SECONDS = 30.0


def iter_json_lines(paths: list[str], on_bad_line: Callable[[str, int, str], None]) -> Iterator[Any]:
    """Decoded objects from JSON-lines files (gzip ok) or stdin (``-``); bad lines reported, skipped."""
    for path in paths:
        for number, line in enumerate(_open_lines(path), start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as error:
                on_bad_line(path, number, f"not JSON ({error})")


def _open_lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
        handle: IO[bytes] = (
            gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
        )
    except OSError as error:
        raise CliError(f"{path}: cannot read ({error.strerror or error})") from None
    with handle:
        try:
            yield from handle
        except (OSError, EOFError) as error:
            raise CliError(f"{path}: read failed ({error})") from None


@dataclass
class KafkaRange:
    since_ms: int | None  # None: from the oldest retained record
    until_ms: int | None  # None: up to the end offsets at start
    max_publish_delay_ms: int
    group: str | None = None  # commit offsets under this group (only when asked)


@dataclass
class KafkaReadStats:
    partitions: int = 0
    records: int = 0
    start_offsets: dict[int, int] | None = None
    end_offsets: dict[int, int] | None = None


async def start_consumer(config: KafkaOptions, group: str | None, name: str = "timeline") -> Any:
    """A started AIOKafkaConsumer (no subscription) built like every Kafka client of oomstream
    (``streamer.kafka``: TLS, SASL, secrets read at each connection), with the shared start-up
    diagnosis: a failure names the setting at fault."""
    from aiokafka import AIOKafkaConsumer

    from streamer.kafka import Credentials, Startup, connection_kwargs, read_credentials_at_connect

    try:
        credentials = Credentials(config)
        kwargs = connection_kwargs(config, credentials=credentials)
    except Exception as error:  # an unreadable secret or TLS file, named by the error
        raise CliError(f"cannot read from Kafka: {error}") from None
    consumer = AIOKafkaConsumer(
        group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", **kwargs
    )
    read_credentials_at_connect(consumer, credentials)
    try:
        await Startup(config, kwargs, name).connect(consumer)
    except Exception as error:
        await _stop(consumer)
        raise CliError(f"cannot read from Kafka: {error}") from None
    return consumer


async def read_kafka_range(
    config: KafkaOptions, window: KafkaRange, stats: KafkaReadStats
) -> AsyncIterator[bytes]:
    """The values of the records published in the range, every partition, then stop."""
    from aiokafka import TopicPartition

    servers = config.servers
    consumer = await start_consumer(config, window.group)
    try:
        partitions = await topic_partitions(config)
        assigned = [TopicPartition(config.events_topic, p) for p in partitions]
        stats.partitions = len(assigned)
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        if window.until_ms is not None:
            stop_at = await consumer.offsets_for_times(
                {tp: window.until_ms + window.max_publish_delay_ms for tp in assigned}
            )
            ends = {tp: (found.offset if found is not None else ends[tp]) for tp, found in stop_at.items()}
        if window.since_ms is not None:
            found_start = await consumer.offsets_for_times({tp: window.since_ms for tp in assigned})
            starts = {
                tp: (found.offset if found is not None else ends[tp]) for tp, found in found_start.items()
            }
        else:
            starts = await consumer.beginning_offsets(assigned)
        stats.start_offsets = {tp.partition: starts[tp] for tp in assigned}
        stats.end_offsets = {tp.partition: ends[tp] for tp in assigned}
        pending = {tp for tp in assigned if starts[tp] < ends[tp]}
        for tp in assigned:
            consumer.seek(tp, starts[tp])
        idle_since = asyncio.get_running_loop().time()
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS)
            now = asyncio.get_running_loop().time()
            if batches:
                idle_since = now
            elif now - idle_since > IDLE_GIVE_UP_SECONDS:
                raise CliError(
                    f"Kafka at {servers} returned nothing for {IDLE_GIVE_UP_SECONDS:g}s before the "
                    "end of the range; partitions left: " + ", ".join(str(tp.partition) for tp in pending)
                )
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    stats.records += 1
                    if record.value is not None:
                        yield record.value
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if window.group is not None:
            await consumer.commit({tp: ends[tp] for tp in assigned})
    finally:
        await _stop(consumer)


async def topic_partitions(config: KafkaOptions) -> list[int]:
    """The events topic's partitions (a consumer without a subscription has no metadata for it)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streamer.kafka import Startup, connection_kwargs, describe_error

    servers = config.servers
    kwargs = connection_kwargs(config)
    admin = AIOKafkaAdminClient(**kwargs)
    startup = Startup(config, kwargs, "timeline")
    try:
        await startup.connect(admin)
        described = await startup.bounded(admin.describe_topics([config.events_topic]), "describe topic")
    except Exception as error:
        raise CliError(
            f"cannot describe topic {config.events_topic!r} on {servers}: {describe_error(error)}"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    for topic in described:
        if (
            topic.get("topic") == config.events_topic
            and topic.get("error_code") == 0
            and topic.get("partitions")
        ):
            return sorted(int(p["partition"]) for p in topic["partitions"])
    raise CliError(f"topic {config.events_topic!r} does not exist on {servers} (--topic)")


async def _stop(consumer: Any) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 10)
    except Exception:  # nothing to add after the real outcome
        return
