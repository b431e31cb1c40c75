"""End to end with Kubernetes: real OOM kills in memory cgroups whose paths carry the pod UID and
container id of pods served by the fake API server, read from the real /dev/kmsg by `oomstream
run`, enriched from its pod watch, correlated with Kubernetes signals and published to the real
Kafka broker.

One service run covers: a pod present before the kill (then its pod status turns OOMKilled and
node-problem-detector reports the kill: one incident), a pod deleted a second before the kill
(tombstone), a static pod (the cgroup carries the config hash, not the API UID), and a pod that
appears in the API only after the kill (the bounded wait).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eventschema import validate_any
from k8sfake.client import write_kubeconfig
from k8sfake.objects import ContainerSpec, make_event, make_pod, terminated
from k8sfake.server import FakeApiServer
from oomlab import cgroupfs_parts, container_id, memcg, pod_uid, run_oom

from tests.integration.kafka_broker import consume_all, unique_topic
from tests.integration.service import kafka_settings, start_oomstream

pytestmark = [pytest.mark.kernel, pytest.mark.kafka, pytest.mark.usefixtures("kernel_allows_oom")]
NODE = "node-e2e"
TOKEN = "e2e-" + secrets.token_hex(8)
T = TypeVar("T")


class ThreadedApi:
    """The fake API server on its own event loop thread, so a synchronous test can drive it
    while `oomstream run` (a subprocess) talks to it over HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = FakeApiServer(token=TOKEN, bookmark_interval_seconds=1.0)
        self._run(self.server.__aenter__())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def inner() -> T:
            return fn(*args)

        result: T = self._run(inner())
        return result

    def close(self) -> None:
        self._run(self.server.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def api() -> Iterator[ThreadedApi]:
    threaded = ThreadedApi()
    try:
        yield threaded
    finally:
        threaded.close()


def start_service(tmp: Path, bootstrap: str, topic: str, kubeconfig: Path) -> subprocess.Popen[str]:
    return start_oomstream(
        tmp,
        **kafka_settings(bootstrap, topic),
        NODE_NAME=NODE,
        OOMSTREAM_SOURCES_KMSG_START="end",
        OOMSTREAM_KUBERNETES_MODE="kubeconfig",
        OOMSTREAM_KUBERNETES_KUBECONFIG_PATH=str(kubeconfig),
        OOMSTREAM_KUBERNETES_POD_WAIT_SECONDS="10",
        OOMSTREAM_KUBERNETES_INCIDENT_WINDOW_SECONDS="6",
    )


def records(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(r.value) for r in asyncio.run(consume_all(bootstrap, topic, timeout_seconds=30))]
    except TimeoutError:
        return []


def wait_for(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = records(bootstrap, topic)
        if done(seen):
            return seen
        time.sleep(1.0)
    return seen


def kill_of(events: list[dict[str, Any]], pids: list[int]) -> dict[str, Any] | None:
    for event in events:
        if event.get("type") == "oom_kill" and (event.get("victim") or {}).get("pid") in pids:
            return event
    return None


def test_kernel_kills_carry_pod_metadata_and_correlate_with_kubernetes_signals(
    tmp_path: Path, kafka_bootstrap: str, api: ThreadedApi
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, api.server.url, TOKEN)

    api.call(api.server.upsert, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})
    # 1. A Deployment's pod, present before its kill.
    uid1, cid1 = pod_uid(), container_id()
    web = make_pod(
        name="web-7d4b9c8f5d-x2x7q",
        namespace="shop",
        uid=uid1,
        node=NODE,
        containers=[ContainerSpec("app", container_id=cid1, memory_request="32Mi", memory_limit="64Mi")],
    )
    api.call(api.server.upsert, web)
    # 2. A Job pod deleted a second before its kill.
    uid2, cid2 = pod_uid(), container_id()
    job = make_pod(
        name="report-29345678-abcde",
        namespace="batch",
        uid=uid2,
        node=NODE,
        owner=("Job", "report-29345678"),
        containers=[ContainerSpec("report", container_id=cid2, memory_limit="64Mi", memory_request="64Mi")],
    )
    api.call(api.server.upsert, job)
    # 3. A static pod: the cgroup holds the kubelet's config hash, the API the mirror pod's UID.
    config_hash, uid3, cid3 = secrets.token_hex(16), pod_uid(), container_id()
    static = make_pod(
        name=f"etcd-{NODE}",
        namespace="kube-system",
        uid=uid3,
        node=NODE,
        static_config_hash=config_hash,
        containers=[ContainerSpec("etcd", container_id=cid3, memory_limit="64Mi", memory_request="64Mi")],
    )
    api.call(api.server.upsert, static)
    # 4. A pod the API serves only after the kill.
    uid4, cid4 = pod_uid(), container_id()

    topic = unique_topic("k8s-e2e")
    proc = start_service(tmp_path, kafka_bootstrap, topic, kubeconfig)
    try:
        time.sleep(4.0)  # connected to Kafka and the API, pods listed
        assert proc.poll() is None, proc.communicate()[1][-3000:]

        with memcg(cgroupfs_parts("burstable", uid1, cid1), 64 << 20) as cgroup:
            killed1 = run_oom(cgroup, comm="web-victim")
        api.call(api.server.delete, job)
        time.sleep(1.0)
        with memcg(cgroupfs_parts("guaranteed", uid2, cid2), 64 << 20) as cgroup:
            killed2 = run_oom(cgroup, comm="job-victim")
        with memcg(cgroupfs_parts("guaranteed", config_hash, cid3), 64 << 20) as cgroup:
            killed3 = run_oom(cgroup, comm="etcd-victim")
        with memcg(cgroupfs_parts("burstable", uid4, cid4), 64 << 20) as cgroup:
            killed4 = run_oom(cgroup, comm="late-victim")
        time.sleep(1.5)
        late = make_pod(
            name="api-5f6d7c8b9a-q9w8e",
            namespace="shop",
            uid=uid4,
            node=NODE,
            containers=[ContainerSpec("api", container_id=cid4, memory_limit="64Mi", memory_request="16Mi")],
        )
        api.call(api.server.upsert, late)
        assert killed1 and killed2 and killed3 and killed4

        # Kubernetes' own signals of kill 1: the pod status, and node-problem-detector's Event,
        # stamped with the wall clock as kubelet and NPD would.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        web_after = make_pod(
            name="web-7d4b9c8f5d-x2x7q",
            namespace="shop",
            uid=uid1,
            node=NODE,
            containers=[
                ContainerSpec(
                    "app",
                    container_id=container_id(),
                    memory_request="32Mi",
                    memory_limit="64Mi",
                    restart_count=1,
                    last_state=terminated(container_id=cid1, started_at=now, finished_at=now),
                )
            ],
            labels=web["metadata"]["labels"],
        )
        web_after["metadata"]["ownerReferences"] = web["metadata"]["ownerReferences"]
        api.call(api.server.upsert, web_after)
        npd = make_event(
            reason="OOMKilling",
            message=f"Memory cgroup out of memory: Killed process {killed1[0]} (web-victim) "
            "total-vm:100000kB, anon-rss:60000kB, file-rss:0kB, shmem-rss:0kB",
            involved_name=NODE,
            host=NODE,
            first_timestamp=now,
        )
        api.call(api.server.upsert, npd)

        def complete(events: list[dict[str, Any]]) -> bool:
            kills = [kill_of(events, pids) for pids in (killed1, killed2, killed3, killed4)]
            incidents = [e for e in events if e.get("type") == "incident"]
            return all(kills) and any(
                i["incident_id"] == (kills[0] or {}).get("incident_id") for i in incidents
            )

        events = wait_for(kafka_bootstrap, topic, complete, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "does not exist" not in err, err[-3000:]  # the node check found node-e2e

    for event in events:
        validate_any(event)
    web_kill, job_kill, static_kill, late_kill = (
        kill_of(events, pids) for pids in (killed1, killed2, killed3, killed4)
    )
    assert web_kill is not None, f"kill 1 not published; stderr: {err[-3000:]}"
    kube = web_kill["kubernetes"]
    assert (kube["namespace"], kube["pod"], kube["container"]) == ("shop", "web-7d4b9c8f5d-x2x7q", "app")
    assert kube["pod_uid"] == uid1 and kube["container_id"] == cid1 and kube["node"] == NODE
    assert kube["workload"] == {"kind": "Deployment", "name": "web"}
    assert kube["owner"]["kind"] == "ReplicaSet"
    assert kube["memory_limit_bytes"] == 64 << 20 and kube["memory_request_bytes"] == 32 << 20
    assert kube["qos_class"] == "Burstable" and kube["labels"]["app"] == "web"
    assert web_kill["enrichment"]["status"] == "ok" and web_kill["enrichment"]["source"] == "api_watch"
    assert web_kill["analysis"]["limit_fired"] == "container_limit"
    victim = web_kill["victim"]
    rss = (victim["anon_rss_kb"] + victim["file_rss_kb"] + victim["shmem_rss_kb"]) * 1024
    # file-rss counts shared mappings (the interpreter) charged to other cgroups: may pass 1.0
    assert web_kill["analysis"]["limit_bytes"] == 64 << 20 and web_kill["analysis"]["rss_bytes"] == rss
    assert web_kill["analysis"]["rss_fraction_of_limit"] == round(rss / (64 << 20), 4)

    assert job_kill is not None
    assert job_kill["kubernetes"]["pod"] == "report-29345678-abcde"
    assert job_kill["kubernetes"]["deleted"] is True and job_kill["enrichment"]["source"] == "tombstone"
    assert job_kill["kubernetes"]["workload"] == {"kind": "CronJob", "name": "report"}

    assert static_kill is not None
    assert static_kill["cgroup"]["pod_uid"] == config_hash
    assert static_kill["kubernetes"]["pod_uid"] == uid3 and static_kill["kubernetes"]["static_pod"] is True
    assert static_kill["kubernetes"]["pod"] == f"etcd-{NODE}"

    assert late_kill is not None
    assert late_kill["enrichment"]["status"] == "ok", late_kill["enrichment"]
    assert late_kill["enrichment"]["waited_seconds"] > 0
    assert late_kill["kubernetes"]["container"] == "api"

    # One incident for kill 1: the kernel event, the pod status and NPD's event share its id.
    incident_id = web_kill["incident_id"]
    assert incident_id
    members = [e for e in events if e.get("incident_id") == incident_id and e["type"] != "incident"]
    assert {e["type"] for e in members} == {"oom_kill", "k8s_oom_killed", "k8s_oom_killing"}, members
    status_signal = next(e for e in members if e["type"] == "k8s_oom_killed")
    assert status_signal["container_id"] == cid1 and status_signal["pod_uid"] == uid1
    (summary,) = [e for e in events if e["type"] == "incident" and e["incident_id"] == incident_id]
    assert summary["kills"] == 1 and summary["visible_in_kubernetes"] is True
    assert summary["verdict"] == "container_limit"
    assert {v["pid"] for v in summary["victims"]} == {killed1[0]}
    # Kill 4's pod never reported an OOMKilled status: Kubernetes did not see it.
    (late_summary,) = [
        e for e in events if e["type"] == "incident" and e["incident_id"] == late_kill["incident_id"]
    ]
    assert late_summary["visible_in_kubernetes"] is False
