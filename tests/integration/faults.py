"""What the fault-matrix tests share: `oomstream run` as a watched subprocess (its event lines and
log as they come, its /metrics), real kills in cgroups of their own, and the events of those kills
read back from the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oomlab import KmsgTail, cgroupfs_parts, container_id, memcg, pod_uid, run_oom

from tests.integration.kafka_broker import LocalCluster, consume_all
from tests.integration.service import kafka_settings, start_oomstream

# Short deadlines, so a quiet-node delay shows within seconds (the defaults are 2.5 s and 10 s).
QUICK = {
    "OOMSTREAM_PIPELINE_LINGER_SECONDS": "0.5",
    "OOMSTREAM_PIPELINE_REPORT_TIMEOUT_SECONDS": "2",
    "OOMSTREAM_STATE_CHECKPOINT_INTERVAL_SECONDS": "0.5",
}
_METRICS_AT = re.compile(r"metrics endpoint listening on \S*:(\d+)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


class Service:
    """`oomstream run` with its stdout (one line per published event) and stderr (the log)
    collected by threads, so a test can wait for a line without blocking on the pipes."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.proc = start_oomstream(tmp, **{**QUICK, **env})
        self.started = time.monotonic()
        self.out: list[tuple[float, str]] = []
        self.err: list[str] = []
        self.running_at: float | None = None  # when it logged "oomstream running" (set up, reading)
        self._lock = threading.Lock()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _collect(self, stream: Iterable[str], is_out: bool) -> None:
        for line in stream:
            with self._lock:
                if is_out:
                    self.out.append((time.monotonic(), line.rstrip("\n")))
                else:
                    self.err.append(line.rstrip("\n"))
                    if self.running_at is None and "oomstream running:" in line:
                        self.running_at = time.monotonic()

    @property
    def log(self) -> str:
        with self._lock:
            return "\n".join(self.err)

    def published(self, needle: str) -> list[float]:
        """When each published-event line naming ``needle`` (a victim's comm) was printed."""
        with self._lock:
            return [when for when, line in self.out if needle in line]

    def wait_published(self, needles: Iterable[str], timeout: float) -> float:
        """Seconds from now until every needle has been printed; fails naming what is missing."""
        wanted = list(needles)
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if all(self.published(needle) for needle in wanted):
                return time.monotonic() - began
            self.check_alive()
            time.sleep(0.1)
        missing = [needle for needle in wanted if not self.published(needle)]
        raise AssertionError(f"not published within {timeout:.0f} s: {missing}\n{self.tail()}")

    def published_after_running(self, needles: Iterable[str]) -> float:
        """Seconds from "oomstream running" (start-up done, a restart's interpreter and imports
        not counted) until the last of ``needles`` was published; call after wait_published."""
        assert self.running_at is not None
        return max(min(self.published(needle)) for needle in needles) - self.running_at

    def wait_log(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while time.monotonic() < deadline:
            found = compiled.search(self.log)
            if found is not None:
                return found
            self.check_alive()
            time.sleep(0.1)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout:.0f} s\n{self.tail()}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            time.sleep(0.2)  # let the collectors catch the last lines
            raise AssertionError(f"oomstream exited with {self.proc.returncode}\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        with self._lock:
            return "log tail:\n" + "\n".join(self.err[-lines:])

    def metrics(self) -> dict[str, float]:
        """The /metrics samples, keyed ``name{labels}`` as exposed."""
        port = int(self.wait_log(_METRICS_AT.pattern, 20).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match is not None:
                samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        return samples

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """A crash: SIGKILL, no final checkpoint, no flush."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._join()

    def stop(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(
                f"oomstream did not exit within {timeout:.0f} s of SIGTERM\n{self.tail()}"
            ) from None
        took = time.monotonic() - began
        self._join()
        return self.proc.returncode, took

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(5)

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a test may have left it stopped
            self.proc.kill()
            self.proc.wait(30)
        self._join()


def kafka_service(tmp: Path, bootstrap: str, topic: str, **env: str) -> Service:
    return Service(tmp, **kafka_settings(bootstrap, topic), **env)


def checkpoint_of(tmp: Path, source: str = "kmsg") -> dict[str, object] | None:
    """The saved position of ``source`` in the service's state directory, or None."""
    for path in (tmp / "state").glob("*.checkpoint.json"):
        try:
            envelope = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if envelope.get("source") == source:
            data = envelope.get("data")
            return data if isinstance(data, dict) else None
    return None


def wait_checkpoint(tmp: Path, source: str = "kmsg", timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = checkpoint_of(tmp, source)
        if saved is not None:
            return saved
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of {source} saved within {timeout:.0f} s")


def comm_for(tag: str, n: int) -> str:
    """A victim name unique to this test run (the kernel keeps 15 bytes)."""
    return f"{tag[:6]}{uuid.uuid4().hex[:6]}{n}"[:15]


@dataclass
class Kill:
    comm: str
    pids: list[int]
    pod_uid: str


def cause_kill(comm: str) -> Kill:
    """One real memcg OOM kill of a process named ``comm`` in a pod cgroup of its own."""
    uid, cid = pod_uid(), container_id()
    with memcg(cgroupfs_parts("burstable", uid, cid), 48 << 20) as cgroup:
        pids = run_oom(cgroup, comm=comm)
    assert pids, f"{comm} was not OOM-killed"
    return Kill(comm, pids, uid)


def events_in(bootstrap: str, topic: str, *, timeout: float = 60) -> list[dict[str, object]]:
    records = asyncio.run(consume_all(bootstrap, topic, timeout_seconds=timeout))
    return [json.loads(record.value) for record in records]


def events_of(events: list[dict[str, object]], kills: Iterable[Kill]) -> dict[str, list[dict[str, object]]]:
    """The published events of each kill (by victim pid), keyed by comm."""
    out: dict[str, list[dict[str, object]]] = {}
    for kill in kills:
        out[kill.comm] = [
            event
            for event in events
            if isinstance(event.get("victim"), dict) and event["victim"].get("pid") in kill.pids  # type: ignore[union-attr]
        ]
    return out


def assert_each_published_once(events: list[dict[str, object]], kills: Iterable[Kill]) -> None:
    """Every kill is in the topic, each under one event id; a repeat may only be a copy of the
    same id (the recognisable unacknowledged tail)."""
    for comm, found in events_of(events, kills).items():
        assert found, f"the kill of {comm} is not in the topic"
        ids = {str(event["event_id"]) for event in found}
        assert len(ids) == 1, f"{comm} was published under several ids: {ids}"


def broker_pid(cluster: LocalCluster, node: int = 1) -> int:
    from tests.integration.kafka_broker import REPO

    pid_file = REPO / "deploy" / "local-kafka" / "work" / cluster.name / f"node-{node}" / "kafka.pid"
    return int(pid_file.read_text().strip())


def capture_kill(comm: str) -> tuple[Kill, list[str]]:
    """A real kill (:func:`cause_kill`) and its report as dmesg prints it, from the header naming
    ``comm`` to the kill line (and the reaper line if it came), read from /dev/kmsg."""
    with KmsgTail() as tail:
        kill = cause_kill(comm)
        pid = str(kill.pids[0]).encode()
        records = tail.wait_for(lambda r: b"Killed process " + pid + b" " in r.text, timeout=15, settle=0.5)
    texts = [(record.usec, record.text.decode("utf-8", "replace")) for record in records]
    start = next(i for i, (_, text) in enumerate(texts) if text.startswith(f"{comm} invoked oom-killer"))
    end = next(i for i, (_, text) in enumerate(texts) if f"Killed process {kill.pids[0]} " in text)
    chosen = texts[start : end + 1]
    chosen += [item for item in texts[end + 1 :] if f"reaped process {kill.pids[0]} " in item[1]]
    return kill, [f"[{usec / 1e6:12.6f}] {text}" for usec, text in chosen]
