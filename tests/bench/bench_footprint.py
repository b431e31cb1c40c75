"""CPU and memory of `oomstream run` on a node: the figures behind the Helm chart's requests/limits
and docs/operations.md#sizing.

The service reads the real /dev/kmsg, watches 110 pods served by the fake API server (a full node),
and publishes to the real Kafka broker ($OOMSTREAM_KAFKA_BOOTSTRAP, else the local one). Phases:
idle (no kills), then a storm of real OOM kills in pod cgroups (tests/oomlab), then idle again.
Measured from /proc/<pid>: CPU (utime+stime) per phase, RSS, and the peak RSS (VmHWM). Baseline in
the same run: a bare `python3 -c pass`-like interpreter importing the same packages (what any
Python service costs before it does anything).

    .venv/bin/python tests/bench/bench_footprint.py [--idle-seconds 20] [--kills 200]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from k8sfake.client import write_kubeconfig  # noqa: E402
from k8sfake.objects import ContainerSpec, make_pod  # noqa: E402
from oomlab import can_cause_oom, cgroupfs_parts, container_id, memcg, oom_storm, pod_uid  # noqa: E402

from tests.integration.service import kafka_settings, kube_settings, start_oomstream  # noqa: E402
from tests.integration.test_k8s_end_to_end import TOKEN, ThreadedApi  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
NODE = "node-bench"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def memory_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def baseline_rss_kib() -> int:
    code = (
        "import aiokafka, orjson, prometheus_client, kubernetes_asyncio, aiohttp, streamer.pipeline, sys; "
        "print('imported', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"imported"
    rss = memory_kib(proc.pid)["VmRSS"]
    proc.communicate(b"")
    return rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--pods", type=int, default=110)
    args = parser.parse_args()
    ok, why = can_cause_oom()
    if not ok:
        print(f"bench_footprint: skipped: cannot cause OOM kills here: {why}")
        return 0
    bootstrap = os.environ.get("OOMSTREAM_KAFKA_BOOTSTRAP")
    if not bootstrap:
        bootstrap = subprocess.run(
            [str(ROOT / "deploy/local-kafka/kafka.sh"), "start"], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
    base_rss = baseline_rss_kib()

    api = ThreadedApi()
    tmp = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    kubeconfig = tmp / "kubeconfig"
    write_kubeconfig(kubeconfig, api.server.url, TOKEN)
    api.call(api.server.upsert, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})
    pods = []
    for i in range(args.pods):
        uid, cid = pod_uid(), container_id()
        pods.append((uid, cid))
        api.call(api.server.upsert, make_pod(
            name=f"app{i % 11}-7d4b9c8f5d-{i:05d}", namespace=f"team-{i % 7}", uid=uid, node=NODE,
            containers=[ContainerSpec("app", container_id=cid, memory_request="32Mi", memory_limit="64Mi")],
        ))  # fmt: skip
    service = start_oomstream(
        tmp,
        **kafka_settings(bootstrap, f"bench.footprint.{secrets.token_hex(4)}"),
        **kube_settings(kubeconfig, NODE),
        OOMSTREAM_KUBERNETES_INCIDENT_WINDOW_SECONDS="5",
    )
    try:
        time.sleep(5.0)  # started, connected, pods listed
        assert service.poll() is None, service.communicate()[1][-2000:]
        pid = service.pid
        start_mem = memory_kib(pid)
        c0 = cpu_seconds(pid)
        time.sleep(args.idle_seconds)
        c1 = cpu_seconds(pid)
        idle_mem = memory_kib(pid)
        # The storm: kills spread over 10 of the node's pods.
        t0 = time.monotonic()
        with memcg(cgroupfs_parts("burstable", *pods[0]), 48 << 20) as first:
            dirs = [first]
            stack = []
            for uid, cid in pods[1:10]:
                ctx = memcg(cgroupfs_parts("burstable", uid, cid), 48 << 20)
                dirs.append(ctx.__enter__())
                stack.append(ctx)
            try:
                result = oom_storm(dirs, kills=args.kills, parallel=2, timeout=300)
            finally:
                for ctx in reversed(stack):
                    ctx.__exit__(None, None, None)
        storm_seconds = time.monotonic() - t0
        time.sleep(8.0)  # linger, enrichment, incident windows, delivery
        c2 = cpu_seconds(pid)
        storm_mem = memory_kib(pid)
        time.sleep(args.idle_seconds)
        c3 = cpu_seconds(pid)
        killed = len(result.killed_pids)
        alive = service.poll() is None
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=60)
        api.close()
    idle_mcores = 1000 * (c1 - c0) / args.idle_seconds
    after_mcores = 1000 * (c3 - c2) / args.idle_seconds
    per_kill_ms = 1000 * (c2 - c1) / max(killed, 1)
    print(f"bench_footprint: oomstream run, {args.pods} pods watched, kmsg, Kafka at {bootstrap}")
    print(f"  baseline: python importing the same packages: RSS {base_rss / 1024:.1f} MiB")
    print(f"  idle:     CPU {idle_mcores:.1f} millicores; RSS {idle_mem['VmRSS'] / 1024:.1f} MiB (at start {start_mem['VmRSS'] / 1024:.1f} MiB)"
          f" = {idle_mem['VmRSS'] / base_rss:.2f}x baseline")  # fmt: skip
    print(f"  storm:    {killed} real OOM kills in {storm_seconds:.1f} s; CPU {per_kill_ms:.2f} ms per kill;"
          f" RSS after {storm_mem['VmRSS'] / 1024:.1f} MiB, peak (VmHWM) {storm_mem['VmHWM'] / 1024:.1f} MiB"
          f" = {storm_mem['VmHWM'] / base_rss:.2f}x baseline")  # fmt: skip
    print(
        f"  idle after the storm: CPU {after_mcores:.1f} millicores{'' if alive else ' (SERVICE HAD EXITED)'}"
    )
    if not alive:
        print(err[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
