"""`oomstream run` end to end on this machine's kernel log: a real OOM kill in, an event out.

Uses the file sink (the Kafka path is covered by the Kafka tests) and the real /dev/kmsg; skips
with the reason where the machine does not allow a real OOM kill.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from eventschema import validate_any
from oomlab import container_id, memcg, pod_uid, run_oom, systemd_parts

from tests.integration.service import start_oomstream

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_allows_oom")]


def start_service(tmp: Path) -> subprocess.Popen[str]:
    return start_oomstream(
        tmp, OOMSTREAM_SINKS_ENABLED="file", OOMSTREAM_SINKS_FILE_PATH=str(tmp / "events.jsonl")
    )


def read_events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    # each checked against its schema (the service runs in another process)
    return [validate_any(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_run_publishes_a_live_kill_checkpoints_and_does_not_repeat_it(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    proc = start_service(tmp_path)
    try:
        time.sleep(2.0)  # let it read the ring buffer's backlog
        uid, cid = pod_uid(), container_id()
        parts = systemd_parts("besteffort", uid, cid)
        with memcg(parts, 64 << 20) as cgroup:
            killed = run_oom(cgroup, comm="svc-victim", oom_score_adj=1000)
        assert killed

        def seen() -> bool:
            return any(e.get("victim") and e["victim"]["pid"] in killed for e in read_events(events_file))  # type: ignore[index]

        assert wait_for(seen, 20), "the kill did not reach the file sink"
        time.sleep(1.5)  # one checkpoint interval after the acknowledgement
    finally:
        code, out, err = stop(proc)
    assert code == 0, err[-2000:]
    [event] = [e for e in read_events(events_file) if e.get("victim") and e["victim"]["pid"] in killed]  # type: ignore[index]
    assert event["cgroup"]["pod_uid"] == uid and event["cgroup"]["container_id"] == cid  # type: ignore[index]
    assert event["cgroup"]["qos_class"] == "BestEffort" and event["cgroup"]["runtime"] == "containerd"  # type: ignore[index]
    assert event["source"]["kind"] == "kmsg" and event["time_source"] == "kmsg_boottime"  # type: ignore[index]
    assert "svc-victim" in out  # one readable line per published event
    checkpoint_files = list((tmp_path / "state").glob("*"))
    assert checkpoint_files, "no checkpoint written"

    # Restart: resumes after the checkpoint, so the same kill is not published again.
    before = len(read_events(events_file))
    proc = start_service(tmp_path)
    time.sleep(4.0)
    code, _, err = stop(proc)
    assert code == 0, err[-2000:]
    again = [e for e in read_events(events_file)[before:] if e.get("victim") and e["victim"]["pid"] in killed]  # type: ignore[index]
    assert again == []
