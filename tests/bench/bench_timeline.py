"""``oomstream timeline`` benchmark against a REAL broker (``make bench``).

Publishes N events (default 100,000: kernel kills from a real report, a Kubernetes signal for
every third) to a fresh topic, then times, each in its own process so peak memory (ru_maxrss) is
its own:

* baseline: reading the same records with a bare aiokafka consumer (getmany, nothing decoded);
* ``oomstream timeline --since 1h --json`` from Kafka (decode, dedupe, join, order, summarize);
* ``oomstream timeline FILE --json`` from the same events as JSON lines;
* ``oomstream timeline --html`` for 10,000 and for N events: seconds and the report's size;
* the live page's state (``--serve``) taking all N events into its 20,000-event window.

Ratios are printed against the baseline measured in this run. Broker: ``$OOMSTREAM_KAFKA_BOOTSTRAP``,
else the single local broker of deploy/local-kafka/kafka.sh (started here if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import orjson  # noqa: E402
from timeline_fixtures import synthetic_events  # noqa: E402

from tests.integration.kafka_broker import (  # noqa: E402
    bench_broker,
    unique_topic,
)

BASELINE = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer, TopicPartition
async def main(bootstrap, topic, expected):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    parts = None
    while not parts:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            consumer.subscribe([topic]); await asyncio.sleep(0.5); parts = consumer.partitions_for_topic(topic); consumer.unsubscribe()
    tps = [TopicPartition(topic, p) for p in parts]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    n = 0
    while n < expected:
        for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
            n += len(records)
    await consumer.stop()
    print(n)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def publish(bootstrap: str, topic: str, events: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        for start in range(0, len(events), 5000):
            futures = [await producer.send(topic, value) for value in events[start : start + 5000]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def timed(argv: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, stdout) of one child process."""
    started = time.perf_counter()
    # A wrapper measures its own child alone: ru_maxrss of RUSAGE_CHILDREN is a maximum over all.
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
    )
    result = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bench_timeline: {' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with bench_broker("bench_timeline") as bootstrap:
        if bootstrap is None:
            return 0
        run(bootstrap, args.events)
    return 0


def run(bootstrap: str, count: int) -> None:
    now = time.time()
    events = synthetic_events(count, start=now - 1800, seed=5)
    encoded = [orjson.dumps(e) for e in events]
    topic = unique_topic("bench.timeline")
    started = time.perf_counter()
    asyncio.run(publish(bootstrap, topic, encoded))
    megabytes = sum(len(v) for v in encoded) / 1e6
    print(
        f"bench_timeline: published {count} events ({megabytes:.0f} MB) in {time.perf_counter() - started:.1f}s"
    )
    oomstream = [sys.executable, "-m", "streamer.cli", "timeline"]
    base_s, base_mib, out = timed([sys.executable, "-c", BASELINE, bootstrap, topic, str(count)])
    print(
        f"  baseline  bare aiokafka read of {out.strip()} records: {base_s:6.2f}s  peak {base_mib:6.0f} MiB"
    )
    kafka_s, kafka_mib, out = timed(
        [*oomstream, "--bootstrap", bootstrap, "--topic", topic, "--since", "1h", "--json"]
    )
    summary = orjson.loads(out)["summary"]
    print(
        f"  timeline  from Kafka ({summary['kills']} kills, {summary['incidents']} incidents): "
        f"{kafka_s:6.2f}s  peak {kafka_mib:6.0f} MiB  ({kafka_s / base_s:.1f}x the baseline's time, "
        f"{kafka_mib / base_mib:.1f}x its memory)"
    )
    with tempfile.TemporaryDirectory() as work:
        lines = Path(work) / "events.jsonl"
        lines.write_bytes(b"\n".join(encoded) + b"\n")
        file_s, file_mib, _ = timed([*oomstream, str(lines), "--json"])
        print(f"  timeline  from a JSON-lines file: {file_s:6.2f}s  peak {file_mib:6.0f} MiB")
        for size in sorted({min(10_000, count), count}):
            subset = Path(work) / f"events-{size}.jsonl"
            subset.write_bytes(b"\n".join(encoded[:size]) + b"\n")
            report = Path(work) / f"report-{size}.html"
            html_s, html_mib, _ = timed([*oomstream, str(subset), "--html", str(report)])
            print(
                f"  --html    {size} events: {report.stat().st_size / 1e6:5.1f} MB report in {html_s:5.2f}s, "
                f"peak {html_mib:4.0f} MiB"
            )
    live_window(events)


def live_window(events: list[dict[str, object]]) -> None:
    """The live page's state taking every event (the backfill of --serve), window 20,000."""
    from streamer.timeline.model import Timeline
    from streamer.timeline.serve import LiveState

    state = LiveState(Timeline(), 20_000, "bench")
    started = time.perf_counter()
    for event in events:
        state.add(event)
    seconds = time.perf_counter() - started
    print(
        f"  --serve   state: {len(events)} events into a 20,000-event window: {seconds:5.2f}s "
        f"({seconds / len(events) * 1e6:.0f} us/event), {state.timeline.events} held"
    )


if __name__ == "__main__":
    sys.exit(main())
