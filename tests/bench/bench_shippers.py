"""Shipper-facing figures (``make bench``), in one run, against the real local broker:

* central mode: kernel lines/s through ``oomstream run`` with ``[sources.kafka_lines]`` (consume, frame,
  assemble, produce events and offsets in transactions) with one member and with two (the gain
  as a ratio), against ``oomstream parse`` (in-process) on the same lines (the baseline);
* syslog TCP ingest lines/s (octet-counted RFC 5424 from another process into the listener and
  the pipeline, events to a null sink) and HTTP ingest lines/s (NDJSON batches, 4 connections,
  each 200 waiting for durability);
* end-to-end latency p50/p99 from the shipper's write (a kill line on the syslog socket) to the
  event in Kafka, at a steady rate, with the service's default settings (the report linger,
  ``pipeline.linger_seconds``, is part of it).

Broker: ``$OOMSTREAM_KAFKA_BOOTSTRAP``, else the local broker of deploy/local-kafka/kafka.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "unit")]

from streamer.inputs import events_from_bytes  # noqa: E402
from tests.integration.kafka_broker import (  # noqa: E402
    BOOTSTRAP_ENV,
    bench_broker,
    oom_report,
    unique_topic,
)
from tests.integration.test_central_mode import committed_events, create_topic, produce  # noqa: E402

NOISE = "[{t:.6f}] eth0: renamed from veth{n:x}: link becomes ready"


def host_log(host_index: int, reports: int, noise_per_report: int) -> list[bytes]:
    lines: list[bytes] = []
    for i in range(host_index * 100_000, host_index * 100_000 + reports):
        t = 1000.0 + i * 0.5
        lines += [NOISE.format(t=t - 0.1, n=i * 1000 + k).encode() for k in range(noise_per_report)]
        lines += [line.encode() for line in oom_report(i, pod=i % 50).splitlines()]
    return lines


def service(tmp: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / f"{name}.log"
    full = dict(os.environ)
    full.update(
        OOMSTREAM_STATE_DIRECTORY=str(tmp / name / "state"),
        OOMSTREAM_SPOOL_DIRECTORY=str(tmp / name / "spool"),
        OOMSTREAM_METRICS_ENABLED="false",
        OOMSTREAM_KUBERNETES_MODE="off",
        OOMSTREAM_LOG_LEVEL="INFO",
    )
    full.update(env)
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "run", "--quiet", "--log-format", "text"],
            cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=handle,
        )  # fmt: skip
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def central(
    bootstrap: str, tmp: Path, members: int, hosts: dict[str, list[bytes]], expected: int
) -> tuple[float, float]:
    """Over a pre-filled 4-partition topic: lines per wall second of ``members`` central-mode
    processes together (first record to last, rebalance pauses included), and lines per member
    CPU second."""
    inputs, events, group = (
        unique_topic("bench-lines"),
        unique_topic("bench-central"),
        f"bench-{uuid.uuid4().hex[:8]}",
    )
    asyncio.run(create_topic(bootstrap, inputs, 4))
    asyncio.run(create_topic(bootstrap, events, 4))
    records = [(host, line) for host, lines in hosts.items() for line in lines]
    asyncio.run(produce(bootstrap, inputs, records))
    procs = []
    for index in range(members):
        env = {
            BOOTSTRAP_ENV: bootstrap,
            "OOMSTREAM_SINKS_KAFKA_EVENTS_TOPIC": events,
            "OOMSTREAM_SINKS_KAFKA_DEAD_LETTER_TOPIC": events + ".dlq",
            "OOMSTREAM_SOURCES_ENABLED": "kafka_lines",
            "OOMSTREAM_SOURCES_KAFKA_LINES_TOPICS": inputs,
            "OOMSTREAM_SOURCES_KAFKA_LINES_GROUP_ID": group,
            "OOMSTREAM_SOURCES_KAFKA_LINES_TRANSACTIONAL_ID": f"{group}-{index}",
        }
        procs.append(service(tmp, f"{group}-{index}", env))
    try:
        got = asyncio.run(committed_events(bootstrap, events, expected, timeout=600))
    finally:
        for proc, _ in procs:
            stop(proc)
    if len({e["event_id"] for e in got}) != expected:
        print(f"  warning: {len(got)} events read, {expected} expected")
    spans = []
    total = 0
    cpu = 0.0
    for _, log in procs:
        pattern = r"throughput: (\d+) records from ([\d.]+) to ([\d.]+) \(unix seconds\), cpu ([\d.]+) s"
        for match in re.finditer(pattern, log.read_text()):
            total += int(match.group(1))
            spans += [float(match.group(2)), float(match.group(3))]
            cpu += float(match.group(4))
    if not spans:
        raise RuntimeError("no throughput line in the members' logs")
    return total / (max(spans) - min(spans)), total / cpu


SENDER = r"""
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
frames = [line.rstrip(b"\n") for line in sys.stdin.buffer]
payload = b"".join(str(len(f)).encode() + b" " + f for f in frames)
s = socket.create_connection(("127.0.0.1", port))
start = time.time()
s.sendall(payload)
s.close()
print(start)
"""


async def syslog_ingest(lines: list[bytes]) -> float:
    from test_pipeline import HoldingSink

    from streamer.pipeline import Pipeline
    from streamer.sources.syslog import SyslogOptions, SyslogSource

    source = SyslogSource(SyslogOptions(tcp_listen_address="127.0.0.1:0"))
    await source.start()
    pipeline: Pipeline
    sink = HoldingSink(set(), on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline([source], sink)
    task = asyncio.create_task(pipeline.run())
    frames = b"\n".join(b"<6>1 2026-12-04T05:00:00Z bench-node kernel - - - " + line for line in lines)
    assert source.tcp_address is not None
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SENDER, str(source.tcp_address[1]), str(len(lines)),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await sender.communicate(frames)
    start = float(out)
    while source.counts["records"] < len(lines) or pipeline.queue_depth:
        await asyncio.sleep(0.01)
    elapsed = time.time() - start
    pipeline.stop()
    await task
    return len(lines) / elapsed


HTTP_CLIENT = r"""
import http.client, json, sys, threading, time
port, batch = int(sys.argv[1]), int(sys.argv[2])
lines = [json.dumps({"message": l.decode(), "host": "bench-node", "source_type": "file"}).encode()
         for l in sys.stdin.buffer.read().splitlines()]
bodies = [b"\n".join(lines[i:i + batch]) for i in range(0, len(lines), batch)]
def worker(mine):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for body in mine:
        conn.request("POST", "/v1/lines", body, {"Content-Type": "application/x-ndjson"})
        response = conn.getresponse(); response.read()
        assert response.status == 200, response.status
start = time.time()
threads = [threading.Thread(target=worker, args=(bodies[i::4],)) for i in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
print(len(lines) / (time.time() - start))
"""


async def http_ingest(lines: list[bytes]) -> float:
    from test_pipeline import HoldingSink

    from streamer.pipeline import Pipeline
    from streamer.sources.http import HttpOptions, HttpSource

    source = HttpSource(HttpOptions(listen_address="127.0.0.1:0", queue_records=50_000))
    await source.start()
    pipeline: Pipeline
    sink = HoldingSink(set(), on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline([source], sink)
    task = asyncio.create_task(pipeline.run())
    assert source.address is not None
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HTTP_CLIENT, str(source.address[1]), "2000",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await client.communicate(b"\n".join(lines))
    pipeline.stop()
    await task
    return float(out)


def latency(bootstrap: str, tmp: Path, rate: float, seconds: float) -> list[float]:
    """Seconds from writing a report's kill line to its event in Kafka, per report."""
    import socket

    from shippers.real import free_port, wait_port

    events = unique_topic("bench-latency")
    port = free_port()
    proc, log = service(
        tmp, "latency",
        {
            BOOTSTRAP_ENV: bootstrap, "OOMSTREAM_SINKS_KAFKA_EVENTS_TOPIC": events,
            "OOMSTREAM_SINKS_KAFKA_DEAD_LETTER_TOPIC": events + ".dlq", "OOMSTREAM_SOURCES_ENABLED": "syslog",
            "OOMSTREAM_SOURCES_SYSLOG_TCP_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        },
    )  # fmt: skip
    sent: dict[int, float] = {}
    try:
        wait_port(port)
        time.sleep(2.0)
        sock = socket.create_connection(("127.0.0.1", port))
        count = int(rate * seconds)
        start = time.time()
        for n in range(count):
            i = 900_000 + n
            lines = oom_report(i, pod=i % 50).splitlines()
            for line in lines:
                frame = b"<6>1 2026-12-04T05:00:00Z latency-node kernel - - - " + line.encode()
                sock.sendall(str(len(frame)).encode() + b" " + frame)
            sent[10_000 + i] = time.time()
            time.sleep(max(0.0, start + (n + 1) / rate - time.time()))
        time.sleep(8.0)
        sock.close()
    finally:
        stop(proc)
    delays = []
    for timestamp, value in asyncio.run(timestamped(bootstrap, events, len(sent))):
        event = json.loads(value)
        pid = (event.get("victim") or {}).get("pid")
        if pid in sent:
            delays.append(timestamp - sent[pid])
    if len(delays) != len(sent):
        print(f"  warning: {len(delays)} of {len(sent)} events found; see {log}")
    return delays


async def timestamped(bootstrap: str, topic: str, want: int) -> list[tuple[float, bytes]]:
    """(record timestamp in seconds, value) of a topic's records: the producer's CreateTime,
    stamped when the service handed the event to its Kafka client."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    out: list[tuple[float, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(out) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r.timestamp / 1000, r.value) for r in records]
    finally:
        await consumer.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--reports", type=int, default=120, help="reports per host")
    parser.add_argument("--noise", type=int, default=100, help="non-OOM lines before each report")
    parser.add_argument("--rate", type=float, default=5.0, help="reports/s for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with bench_broker("bench_shippers") as bootstrap:
        if bootstrap is None:
            return 0
        hosts = {f"bench-{h}": host_log(h, args.reports, args.noise) for h in range(args.hosts)}
        all_lines = [line for lines in hosts.values() for line in lines]
        total = len(all_lines)
        start = time.process_time()
        expected = sum(len(events_from_bytes(b"\n".join(lines) + b"\n")) for lines in hosts.values())
        parse_rate = total / (time.process_time() - start)
        print(f"bench_shippers: {args.hosts} hosts, {total} kernel lines ({expected} kills, "
              f"{args.noise} other lines per report)")  # fmt: skip
        print(
            f"  oomstream parse (in-process, CPU time), same lines   {parse_rate:12,.0f} lines/s  (baseline)"
        )
        with tempfile.TemporaryDirectory(prefix="bench-shippers-") as tmp:
            one, one_cpu = central(bootstrap, Path(tmp), 1, hosts, expected)
            print(f"  central mode, 1 member (4 partitions)               {one:12,.0f} lines/s  "
                  f"= {one / parse_rate:.2f} x parse; {one_cpu:,.0f} lines per member CPU second")  # fmt: skip
            two, two_cpu = central(bootstrap, Path(tmp), 2, hosts, expected)
            print(f"  central mode, 2 members, first to last record       {two:12,.0f} lines/s  "
                  f"= {two / parse_rate:.2f} x parse; gain 2 vs 1: {two / one:.2f}x (rebalance included)")  # fmt: skip
            print(f"  central mode, 2 members: {two_cpu:,.0f} lines per member CPU second")
            sample = all_lines[:100_000]
            tcp = asyncio.run(syslog_ingest(sample))
            print(f"  syslog TCP ingest (octet counted, 1 connection)     {tcp:12,.0f} lines/s")
            http = asyncio.run(http_ingest(sample))
            print(f"  HTTP ingest (NDJSON, 2000-line batches, 4 conns)    {http:12,.0f} lines/s")
            delays = sorted(latency(bootstrap, Path(tmp), args.rate, args.seconds))
            if delays:
                p50 = statistics.median(delays)
                p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
                print(f"  latency syslog write -> event in Kafka, {args.rate:g} reports/s, default linger 2.5 s: "
                      f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(delays)} kills)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
