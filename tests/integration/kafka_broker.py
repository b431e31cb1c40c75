"""Helpers for tests and benchmarks that need a REAL Kafka: clusters via deploy/local-kafka/kafka.sh,
reading a topic back with a consumer group, and OOM events made by parsing real kernel log text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsers.events import OomEvent, make_event_id
from streamer.inputs import ScanOptions, events_from_bytes

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "local-kafka" / "kafka.sh"
LIB_DIR = REPO / "deploy" / "local-kafka" / "lib"
BOOTSTRAP_ENV = "OOMSTREAM_KAFKA_BOOTSTRAP"


def missing_prerequisite() -> str | None:
    """Why a local broker cannot be started here, or None. Only missing tools are a reason."""
    if not KAFKA_SH.exists():
        return f"{KAFKA_SH} is missing"
    if shutil.which(os.environ.get("JAVA", "java")) is None:
        return "java is not installed (Kafka needs a Java 17+ runtime)"
    fetched = any(LIB_DIR.glob("kafka_2.13-*.jar"))
    if not fetched and shutil.which(os.environ.get("MVN", "mvn")) is None:
        return "mvn is not installed and Kafka's jars are not fetched (deploy/local-kafka/kafka.sh fetch)"
    return None


def kafka_sh(*args: str, timeout: float = 180, env: dict[str, str] | None = None) -> str:
    """Run kafka.sh; return its last stdout line (the bootstrap string for start/start-node)."""
    result = subprocess.run(
        [str(KAFKA_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"kafka.sh {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}{result.stdout[-1000:]}"
        )
    lines = result.stdout.strip().splitlines()
    return lines[-1].strip() if lines else ""


@dataclass
class LocalCluster:
    """A named cluster of deploy/local-kafka; dedicated names keep tests off shared brokers."""

    name: str
    nodes: int = 1
    port: int | None = None
    controller_port: int | None = None  # default: port + 100
    bootstrap: str = ""
    started_here: bool = False
    extra_properties: str = ""  # server.properties lines (KAFKA_EXTRA_PROPERTIES), e.g. a SASL listener

    def _env(self) -> dict[str, str] | None:
        return {"KAFKA_EXTRA_PROPERTIES": self.extra_properties} if self.extra_properties else None

    def running(self) -> bool:
        result = subprocess.run(
            [str(KAFKA_SH), "status", "--name", self.name], capture_output=True, text=True, check=False
        )
        return result.returncode == 0

    def start(self) -> str:
        args = ["start", "--name", self.name, "--nodes", str(self.nodes)]
        if self.port is not None:
            args += ["--port", str(self.port)]
        if self.controller_port is not None:
            args += ["--controller-port", str(self.controller_port)]
        self.started_here = not self.running()
        self.bootstrap = kafka_sh(*args, env=self._env())
        return self.bootstrap

    def stop(self) -> None:
        kafka_sh("stop", "--name", self.name)

    def clean(self) -> None:
        kafka_sh("clean", "--name", self.name)

    def kill_node(self, node: int) -> None:
        kafka_sh("kill-node", str(node), "--name", self.name)

    def start_node(self, node: int) -> None:
        kafka_sh("start-node", str(node), "--name", self.name, env=self._env())


def run_tools(*commands: Sequence[str], timeout: float = 120) -> None:
    """Run several ``kafka.sh tool ...`` commands at once (each is a JVM start: seconds)."""
    processes = [
        subprocess.Popen(
            [str(KAFKA_SH), "tool", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    failures = []
    for command, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=timeout)
        if process.returncode != 0:
            failures.append(
                f"kafka.sh tool {' '.join(command)} ({process.returncode}): {err[-2000:]}{out[-500:]}"
            )
    if failures:
        raise RuntimeError("\n".join(failures))


def unique_topic(prefix: str) -> str:
    return f"it.{prefix}.{uuid.uuid4().hex[:10]}"


# -- reading back ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


async def consume_all(
    bootstrap: str,
    topic: str,
    *,
    group: str | None = None,
    timeout_seconds: float = 60.0,
) -> list[Consumed]:
    """Everything in the topic up to its current end offsets, read by a fresh consumer group."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group or f"it-verify-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    out: list[Consumed] = []
    try:
        deadline = time.monotonic() + timeout_seconds
        partitions = consumer.partitions_for_topic(topic) or set()
        while not partitions and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        done = {tp for tp, end in ends.items() if end == 0}
        while len(done) < len(tps):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"read {len(out)} records of {topic}; partitions not finished: {set(tps) - done}"
                )
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        out.append(
                            Consumed(
                                record.topic,
                                record.partition,
                                record.offset,
                                record.key,
                                record.value,
                                tuple(record.headers or ()),
                            )
                        )
                if tp in ends and await consumer.position(tp) >= ends[tp]:
                    done.add(tp)
            for tp in tps:
                if tp not in done and tp in consumer.assignment() and await consumer.position(tp) >= ends[tp]:
                    done.add(tp)
        await consumer.commit()
    finally:
        await consumer.stop()
    return out


# -- events from real log text -------------------------------------------------------------------------

_POD = "1f2e3d4c_5b6a_7980_a1b2_{:012d}"
_CID = "{:064x}"


def oom_report(i: int, *, pod: int, complete: bool = True) -> str:
    """A cgroup v2 memcg OOM report of a Kubernetes container as dmesg prints it (kernel 5.15)."""
    t = 1000.0 + i * 0.5
    scope = (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{_POD.format(pod)}.slice/cri-containerd-{_CID.format(pod + 1)}.scope"
    )
    pid = 10_000 + i
    lines = [
        f"[{t:.6f}] worker invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=984",
        f"[{t:.6f}] CPU: 1 PID: {pid} Comm: worker Not tainted 5.15.0-91-generic #101-Ubuntu",
        f"[{t:.6f}] memory: usage 262144kB, limit 262144kB, failcnt {i}",
        f"[{t:.6f}] swap: usage 0kB, limit 0kB, failcnt 0",
        f"[{t:.6f}] Memory cgroup stats for {scope}:",
        f"[{t:.6f}] anon 266002432",
        f"[{t:.6f}] file 12288",
        f"[{t:.6f}] Tasks state (memory values in pages):",
        f"[{t:.6f}] [  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
    ]
    for task in range(3):
        tpid = pid - task
        lines.append(
            f"[{t:.6f}] [{tpid:7d}]     0 {tpid:5d}   100000    {65000 - task:5d}   600000        0           984 worker"
        )
    if complete:
        lines += [
            f"[{t:.6f}] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=x,mems_allowed=0,"
            f"oom_memcg={scope},task_memcg={scope},task=worker,pid={pid},uid=0",
            f"[{t:.6f}] Memory cgroup out of memory: Killed process {pid} (worker) total-vm:400000kB, "
            f"anon-rss:{200000 + i}kB, file-rss:1200kB, shmem-rss:0kB, UID:0 pgtables:600kB oom_score_adj:984",
        ]
    return "\n".join(lines) + "\n"


def oom_log(count: int, *, pods: int = 50, partial_every: int = 0) -> bytes:
    parts = []
    for i in range(count):
        partial = bool(partial_every) and i % partial_every == partial_every - 1
        parts.append(oom_report(i, pod=i % pods, complete=not partial))
    return "".join(parts).encode()


_PARSED: dict[tuple[int, int, str], list[OomEvent]] = {}


def make_events(
    count: int, *, pods: int = 50, partial_every: int = 0, host: str = "node-it"
) -> list[OomEvent]:
    """``count`` distinct normalized events (unique deterministic ids).

    The first few hundred are parsed from real-format log text; parsing is the slow part, so more
    are made by shifting those events' kernel time (a new kill of the same shape, new event_id).
    """
    base_count = min(count, 400)
    cache_key = (pods, partial_every, host)
    parsed = _PARSED.get(cache_key)
    if parsed is None or len(parsed) < base_count:
        parsed = events_from_bytes(
            oom_log(max(base_count, 400), pods=pods, partial_every=partial_every), ScanOptions(host=host)
        )
        _PARSED[cache_key] = parsed
    out: list[OomEvent] = []
    for n in range(count):
        event = parsed[n % len(parsed)]
        round_ = n // len(parsed)
        if round_ == 0:
            out.append(event)
            continue
        kernel_time = (event.kernel_time or 0.0) + round_ * 100_000.0
        pid = event.victim.pid if event.victim is not None else None
        event_id = make_event_id(
            boot_id=event.boot_id,
            host=event.host,
            kernel_time=kernel_time,
            wall_time=None,
            pid=pid,
            fallback=None,
        )
        out.append(dataclasses.replace(event, event_id=event_id, kernel_time=kernel_time))
    return out


def duplicates(ids: Sequence[str]) -> int:
    return len(ids) - len(set(ids))


@contextlib.contextmanager
def bench_broker(name: str) -> Iterator[str | None]:
    """For ``make bench``: the broker named by OOMSTREAM_KAFKA_BOOTSTRAP, else a local one started
    (and stopped) here; None, after saying why, when neither can be had."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    reason = missing_prerequisite()
    if reason is not None:
        print(f"{name}: skipped: {reason} (or set {BOOTSTRAP_ENV})")
        yield None
        return
    cluster = LocalCluster("single")
    bootstrap = cluster.start()
    try:
        yield bootstrap
    finally:
        if cluster.started_here:
            cluster.stop()
