"""Kafka sink benchmark against a REAL broker (``make bench``): the sink beside plain aiokafka.

Throughput, in interleaved rounds of one run (plain, accumulator, sink, ...), on the same broker,
with the same producer settings (acks=all, idempotent, zstd, linger 5 ms, 256 KiB batches):

* plain: ``AIOKafkaProducer.send()`` per event without awaiting each record, at most
  ``max_in_flight`` unacknowledged (the oldest future is awaited when the bound is reached),
  each event serialized with ``event_to_json`` and given the sink's key and headers: the same
  bytes, keys and headers as the sink writes;
* sink: ``KafkaSink.submit`` with its delivery reports (a ``DeliveryTally``), Prometheus metrics
  and in-flight bookkeeping on, then ``flush``.

It prints events/s and this process's CPU per event for each round, the median of each, and the
ratio sink / plain (target: >= 0.95). Then the sink's produce latency at a steady 1,000 events/s
(submit to acknowledgement; target p99 <= 20 ms).

Broker: ``$OOMSTREAM_KAFKA_BOOTSTRAP``, else the single local broker of deploy/local-kafka/kafka.sh
(started here if needed, and stopped again if this run started it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from prometheus_client import CollectorRegistry

from parsers.events import OomEvent, event_to_json
from streamer.kafka import KafkaOptions, connection_kwargs
from streamer.sinks import DeliveryResult, DeliveryStatus, DeliveryTally, sink_metrics
from streamer.sinks.kafka import KafkaSink, event_headers, select_key
from tests.integration.kafka_broker import (
    bench_broker,
    make_events,
    unique_topic,
)

WARM_UP_EVENTS = 2_000


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def options_for(bootstrap: str, name: str) -> KafkaOptions:
    return KafkaOptions(
        bootstrap_servers=tuple(bootstrap.split(",")),
        events_topic=unique_topic(f"bench.{name}"),
        dead_letter_topic=unique_topic(f"bench.{name}.dl"),
        producer_host="bench",
        origin="bench",
    )


class Plain:
    """aiokafka's own producer and accumulator, used the way its documentation shows."""

    def __init__(self, options: KafkaOptions) -> None:
        self.options = options
        self.producer: object = None
        self.host = options.producer_host.encode() if options.producer_host else b"bench"

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        options = self.options
        # The sink creates the topics (same partitions); the producer only writes.
        async with KafkaSink(options, registry=CollectorRegistry()):
            pass
        producer = AIOKafkaProducer(
            **connection_kwargs(options),
            acks="all",
            enable_idempotence=True,
            compression_type=options.compression,
            linger_ms=options.linger_ms,
            max_batch_size=options.batch_size_bytes,
            max_request_size=options.max_request_size_bytes,
        )
        await producer.start()
        self.producer = producer

    async def send(self, events: Sequence[OomEvent]) -> None:
        producer: object = self.producer
        send = producer.send  # type: ignore[attr-defined]
        topic = self.options.events_topic
        key_fields = self.options.key_fields
        host = self.host
        bound = self.options.max_in_flight
        pending: collections.deque[asyncio.Future[object]] = collections.deque()
        for event in events:
            future = await send(
                topic,
                event_to_json(event),
                key=select_key(event, key_fields),
                headers=event_headers(event.event_id, host),
            )
            pending.append(future)
            if len(pending) >= bound:
                await pending.popleft()
        for future in pending:
            await future

    async def stop(self) -> None:
        await self.producer.stop()  # type: ignore[attr-defined]


class Accumulator(Plain):
    """What the sink would be on aiokafka's own accumulator: ``send()`` per event plus the sink's
    per-event bookkeeping (a ``DeliveryResult`` per acknowledgement to a ``DeliveryTally``, the
    latency histogram, the in-flight set). Measures whether the sink's own batcher earns its keep."""

    def __init__(self, options: KafkaOptions) -> None:
        super().__init__(options)
        self.tally = DeliveryTally()
        registry = CollectorRegistry()
        self.latency = sink_metrics(registry).produce_latency.labels("accumulator")

    async def send(self, events: Sequence[OomEvent]) -> None:
        producer: object = self.producer
        send = producer.send  # type: ignore[attr-defined]
        topic = self.options.events_topic
        key_fields = self.options.key_fields
        host = self.host
        bound = self.options.max_in_flight
        tally, latency = self.tally, self.latency
        in_flight: set[object] = set()
        pending: collections.deque[asyncio.Future[object]] = collections.deque()

        def reported(token: object, started: float, event_id: str, future: asyncio.Future[object]) -> None:
            in_flight.discard(token)
            metadata: object = future.result()
            elapsed = time.perf_counter() - started
            latency.observe(elapsed)
            tally(
                DeliveryResult(
                    event_id,
                    (),
                    DeliveryStatus.ACKED,
                    topic=topic,
                    partition=metadata.partition,  # type: ignore[attr-defined]
                    offset=metadata.offset,  # type: ignore[attr-defined]
                    latency_seconds=elapsed,
                )
            )

        for event in events:
            token = object()
            in_flight.add(token)
            future = await send(
                topic,
                event_to_json(event),
                key=select_key(event, key_fields),
                headers=event_headers(event.event_id, host),
            )
            future.add_done_callback(functools.partial(reported, token, time.perf_counter(), event.event_id))
            pending.append(future)
            if len(pending) >= bound:
                await pending.popleft()
        for future in pending:
            await future


class SinkRunner:
    def __init__(self, options: KafkaOptions) -> None:
        self.tally = DeliveryTally()
        self.sink = KafkaSink(options, on_delivery=self.tally, registry=CollectorRegistry())

    async def start(self) -> None:
        await self.sink.start()

    async def send(self, events: Sequence[OomEvent]) -> None:
        submit = self.sink.submit
        for event in events:
            await submit(event)
        await self.sink.flush()

    async def stop(self) -> None:
        await self.sink.close()
        assert self.tally.failed == 0, self.tally.failures[:3]


async def timed(runner: Plain | SinkRunner, events: Sequence[OomEvent]) -> tuple[float, float]:
    """(events/s, CPU us of this process per event) for one round."""
    began, cpu_began = time.perf_counter(), time.process_time()
    await runner.send(events)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    return len(events) / elapsed, cpu / len(events) * 1e6


async def throughput(bootstrap: str, events: list[OomEvent], rounds: int) -> None:
    plain = Plain(options_for(bootstrap, "plain"))
    accumulator = Accumulator(options_for(bootstrap, "accumulator"))
    sink = SinkRunner(options_for(bootstrap, "sink"))
    runners: list[tuple[str, Plain | SinkRunner]] = [
        ("plain", plain),
        ("accumulator", accumulator),
        ("sink", sink),
    ]
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in runners}
    for _, runner in runners:
        await runner.start()
    try:
        # Warm-up: every partition's leader known, connections open, code paths hot.
        for _, runner in runners:
            await runner.send(events[:WARM_UP_EVENTS])
        per_round = events[WARM_UP_EVENTS:]
        for n in range(rounds):
            order = runners[n % 3 :] + runners[: n % 3]  # none always goes first
            for name, runner in order:
                rate, cpu_us = await timed(runner, per_round)
                figures[name].append((rate, cpu_us))
                print(f"  round {n + 1} {name:11}: {rate:10,.0f} events/s  {cpu_us:6.1f} us CPU/event")
    finally:
        for _, runner in reversed(runners):
            await runner.stop()
    assert sink.tally.sent == WARM_UP_EVENTS + rounds * len(per_round), sink.tally
    plain_rate = statistics.median(r for r, _ in figures["plain"])
    sink_rate = statistics.median(r for r, _ in figures["sink"])
    plain_cpu = statistics.median(c for _, c in figures["plain"])
    sink_cpu = statistics.median(c for _, c in figures["sink"])
    ratios = [s[0] / p[0] for s, p in zip(figures["sink"], figures["plain"], strict=True)]
    print(
        f"plain aiokafka send() (median of {rounds}): {plain_rate:10,.0f} events/s  {plain_cpu:6.1f} us CPU/event"
    )
    print(
        f"KafkaSink             (median of {rounds}): {sink_rate:10,.0f} events/s  {sink_cpu:6.1f} us CPU/event"
    )
    print(
        f"ratio sink / plain: {sink_rate / plain_rate:.2f} (per round: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"); CPU per event sink / plain: {sink_cpu / plain_cpu:.2f}"
    )
    print(f"target: sink >= 0.95 x plain: {'MET' if sink_rate >= 0.95 * plain_rate else 'NOT MET'}")
    acc_rate = statistics.median(r for r, _ in figures["accumulator"])
    acc_cpu = statistics.median(c for _, c in figures["accumulator"])
    print(
        f"aiokafka accumulator + the sink's per-event reports (median of {rounds}): {acc_rate:10,.0f} events/s  "
        f"{acc_cpu:6.1f} us CPU/event; the sink's own batcher vs it: rate x{sink_rate / acc_rate:.2f}, "
        f"CPU per event x{sink_cpu / acc_cpu:.2f}"
    )


async def latency(bootstrap: str, events: list[OomEvent], rate: float) -> None:
    latencies: list[float] = []

    def on_delivery(result: DeliveryResult) -> None:
        latencies.append(result.latency_seconds)

    options = options_for(bootstrap, "latency")
    async with KafkaSink(options, on_delivery=on_delivery, registry=CollectorRegistry()) as sink:
        for event in events[:500]:
            await sink.submit(event)
        await sink.flush()
        latencies.clear()
        began = time.perf_counter()
        for n, event in enumerate(events):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await sink.submit(event)
        await sink.flush()
        achieved = len(events) / (time.perf_counter() - began)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(
        f"KafkaSink at {rate:,.0f}/s (achieved {achieved:,.0f}/s, {len(latencies):,} events): "
        f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms; "
        f"target p99 <= 20 ms: {'MET' if p99 <= 0.020 else 'NOT MET'}"
    )


async def run(bootstrap: str, args: argparse.Namespace) -> None:
    events = make_events(WARM_UP_EVENTS + args.events, pods=200)
    size = statistics.mean(len(event_to_json(e)) for e in events[:1000])
    print(
        f"broker {bootstrap}; {os.cpu_count()} CPUs; {args.events:,} events of ~{size:.0f} bytes JSON per "
        f"round (acks=all, idempotent, zstd, linger 5 ms)"
    )
    await throughput(bootstrap, events, args.rounds)
    if args.seconds > 0:
        await latency(bootstrap, events[: int(args.rate * args.seconds)], args.rate)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40_000, help="events per throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds of each")
    parser.add_argument("--rate", type=float, default=1_000.0, help="steady rate for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run; 0: none")
    args = parser.parse_args()
    with bench_broker("bench_kafka") as bootstrap:
        if bootstrap is None:
            return 0
        asyncio.run(run(bootstrap, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
