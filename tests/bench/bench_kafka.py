"""Kafka sink benchmark against a REAL local broker (``make bench``).

Measures, in one run, for the KafkaSink (acks=all, idempotent, default compression zstd) and for
aiokafka's plain ``send_and_wait`` loop with the same producer settings (the baseline):

* throughput: normalized OomEvents serialized and acknowledged per second (targets: >= 50k/s on
  2 cores for the sink);
* produce latency p50/p99 at a steady 1,000 events/s (target: p99 <= 20 ms for the sink), from
  submit to broker acknowledgement.

Broker: ``$OOMSTREAM_KAFKA_BOOTSTRAP``, else the single local broker of deploy/local-kafka/kafka.sh
(started here if needed, and stopped again if this run started it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from prometheus_client import CollectorRegistry

from parsers.events import OomEvent, event_to_json
from streamer.sinks import DeliveryResult, DeliveryTally
from streamer.sinks.kafka import (
    KafkaSink,
    KafkaSinkConfig,
    connection_kwargs,
    event_headers,
    select_key,
)
from tests.integration.kafka_broker import (
    BOOTSTRAP_ENV,
    LocalCluster,
    make_events,
    missing_prerequisite,
    unique_topic,
)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def sink_config(bootstrap: str, name: str) -> KafkaSinkConfig:
    return KafkaSinkConfig(
        tuple(bootstrap.split(",")),
        events_topic=unique_topic(f"bench.{name}"),
        dead_letter_topic=unique_topic(f"bench.{name}.dl"),
        origin="bench",
    )


WARM_UP_EVENTS = 500


async def warm_up(sink: KafkaSink, events: list[OomEvent]) -> int:
    """Send a few hundred events (every partition of a fresh topic) before measuring: the first
    records to each partition wait for its leader, which is set-up cost, not produce latency."""
    batch = events[:WARM_UP_EVENTS]
    for event in batch:
        await sink.submit(event)
    await sink.flush()
    return len(batch)


async def sink_throughput(bootstrap: str, events: list[OomEvent]) -> tuple[float, DeliveryTally, float]:
    """Events/s, the tally, and this process's CPU time per event (us) during the run."""
    tally = DeliveryTally()
    config = sink_config(bootstrap, "sink-tput")
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        warm = await warm_up(sink, events)
        began = time.perf_counter()
        cpu_began = time.process_time()
        for event in events:
            await sink.submit(event)
        await sink.flush()
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
    assert tally.failed == 0 and tally.sent == len(events) + warm, tally
    return len(events) / elapsed, tally, cpu / len(events) * 1e6


async def sink_latency(bootstrap: str, events: list[OomEvent], rate: float) -> tuple[list[float], float]:
    latencies: list[float] = []

    def on_delivery(result: DeliveryResult) -> None:
        latencies.append(result.latency_seconds)

    config = sink_config(bootstrap, "sink-lat")
    async with KafkaSink(config, on_delivery=on_delivery, registry=CollectorRegistry()) as sink:
        await warm_up(sink, events)
        latencies.clear()
        began = time.perf_counter()
        for n, event in enumerate(events):
            due = began + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await sink.submit(event)
        await sink.flush()
        achieved = len(events) / (time.perf_counter() - began)
    return latencies, achieved


def _baseline_producer_kwargs(config: KafkaSinkConfig) -> dict[str, object]:
    kwargs: dict[str, object] = dict(connection_kwargs(config))
    kwargs.update(
        acks="all",
        enable_idempotence=True,
        compression_type="zstd",
        linger_ms=config.linger_ms,
        max_batch_size=config.batch_size_bytes,
        max_request_size=config.max_request_size_bytes,
    )
    return kwargs


async def baseline(
    bootstrap: str, events: list[OomEvent], *, rate: float | None, max_seconds: float = 30.0
) -> tuple[float, list[float]]:
    """aiokafka's plain loop: serialize, ``await producer.send_and_wait`` one record at a time."""
    from aiokafka import AIOKafkaProducer

    config = sink_config(bootstrap, "baseline-rate" if rate else "baseline-tput")
    # Same topics and settings as the sink: let the sink create the topics, then close it.
    async with KafkaSink(config, registry=CollectorRegistry()):
        pass
    producer = AIOKafkaProducer(**_baseline_producer_kwargs(config))
    await producer.start()
    host = b"bench"
    latencies: list[float] = []
    try:
        for event in events[:WARM_UP_EVENTS]:  # same warm-up as the sink's, not measured
            await producer.send(
                config.events_topic, event_to_json(event), key=select_key(event, config.key_fields)
            )
        await producer.flush()
        began = time.perf_counter()
        sent = 0
        for n, event in enumerate(events):
            if time.perf_counter() - began > max_seconds:
                break  # it cannot keep up with the rate: enough samples, no need to wait for all
            if rate is not None:
                delay = began + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            started = time.perf_counter()
            await producer.send_and_wait(
                config.events_topic,
                event_to_json(event),
                key=select_key(event, config.key_fields),
                headers=event_headers(event.event_id, host),
            )
            latencies.append(time.perf_counter() - started)
            sent += 1
        elapsed = time.perf_counter() - began
    finally:
        await producer.stop()
    return sent / elapsed, latencies


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def timed_us(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) * 1e6


async def run(bootstrap: str, args: argparse.Namespace) -> None:
    events = make_events(args.events + 1, pods=200)
    size = statistics.mean(len(event_to_json(e)) for e in events[:1000])
    latency_events = events[: int(args.rate * args.seconds)]
    print(f"broker {bootstrap}; {os.cpu_count()} CPUs; events of ~{size:.0f} bytes JSON (zstd, acks=all)")

    tput, _, cpu_us = await sink_throughput(bootstrap, events[1:])
    print(f"KafkaSink throughput:            {tput:10,.0f} events/s  ({args.events:,} events)")
    serialize_us = timed_us(lambda: [event_to_json(e) for e in events[:2000]]) / 2000
    print(
        f"  CPU of this process per event: {cpu_us:10.1f} us  (of which event_to_json {serialize_us:.1f} us)"
    )
    base_events = events[1 : 1 + args.baseline_events]
    base_tput, _ = await baseline(bootstrap, base_events, rate=None)
    print(f"send_and_wait loop throughput:   {base_tput:10,.0f} events/s  ({len(base_events):,} events)")
    print(f"  ratio sink / send_and_wait:    {tput / base_tput:10.1f} x")

    latencies, achieved = await sink_latency(bootstrap, latency_events, args.rate)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(
        f"KafkaSink at {args.rate:,.0f}/s (achieved {achieved:,.0f}/s, {len(latencies):,} events): "
        f"p50 {ms(p50)}, p99 {ms(p99)}, max {ms(max(latencies))}"
    )
    base_rate_tput, base_lat = await baseline(
        bootstrap, latency_events, rate=args.rate, max_seconds=args.seconds
    )
    b50, b99 = percentile(base_lat, 0.50), percentile(base_lat, 0.99)
    print(
        f"send_and_wait at {args.rate:,.0f}/s (achieved {base_rate_tput:,.0f}/s, {len(base_lat):,} events): "
        f"p50 {ms(b50)}, p99 {ms(b99)}, max {ms(max(base_lat))}"
    )
    print(
        f"targets: throughput >= 50,000/s: {'MET' if tput >= 50_000 else 'NOT MET'}; "
        f"p99 <= 20 ms at 1k/s: {'MET' if p99 <= 0.020 else 'NOT MET'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events for the throughput run")
    parser.add_argument("--baseline-events", type=int, default=5_000, help="events for the send_and_wait run")
    parser.add_argument("--rate", type=float, default=1_000.0, help="steady rate for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    args = parser.parse_args()
    bootstrap = os.environ.get(BOOTSTRAP_ENV)
    cluster: LocalCluster | None = None
    if not bootstrap:
        reason = missing_prerequisite()
        if reason is not None:
            print(f"bench_kafka: skipped: {reason} (or set {BOOTSTRAP_ENV})")
            return 0
        cluster = LocalCluster("single")
        bootstrap = cluster.start()
    try:
        asyncio.run(run(bootstrap, args))
    finally:
        if cluster is not None and cluster.started_here:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
