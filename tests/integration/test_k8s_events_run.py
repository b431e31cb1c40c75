"""`oomstream run` with the Kubernetes Event sink on (`sinks.enabled = ["kafka", "k8s_events"]`,
a side sink fed by FanOutSink): a kernel report (the bundled 6.18 pod-limit
sample, read as a file) enriched from the fake API server's pod, published to the real broker, and
a core/v1 Event on the pod. With RBAC denying Event creation, Kafka delivery is untouched and the
service says which rule is missing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8sfake.client import write_kubeconfig
from k8sfake.objects import ContainerSpec, make_pod

from tests.integration.kafka_broker import unique_topic
from tests.integration.service import ROOT, kafka_settings, start_oomstream
from tests.integration.test_k8s_end_to_end import TOKEN, ThreadedApi, records

pytestmark = pytest.mark.kafka
NODE = "node-events"
SAMPLE = ROOT / "streamer" / "samples" / "6.18-pod-limit.dmesg"
POD_UID = "069f04fa-7f16-4864-9226-0642f8fc2327"
CONTAINER_ID = "053c1732d5701f04ac6b4503b2e311684fbbf0d2a984aea75e3a36619edc1c2d"


@pytest.fixture
def fake_api() -> Iterator[ThreadedApi]:
    threaded = ThreadedApi()
    try:
        yield threaded
    finally:
        threaded.close()


def _start(tmp: Path, bootstrap: str, topic: str, api: ThreadedApi) -> subprocess.Popen[str]:
    kubeconfig = write_kubeconfig(tmp / "kubeconfig", api.server.url, TOKEN)
    api.call(api.server.upsert, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})
    pod = make_pod(
        name="web-7d4b9c8f5d-x2x7q",
        namespace="payments",
        uid=POD_UID,
        node=NODE,
        containers=[
            ContainerSpec("web", container_id=CONTAINER_ID, memory_request="96Mi", memory_limit="96Mi")
        ],
    )
    api.call(api.server.upsert, pod)
    return start_oomstream(
        tmp,
        **kafka_settings(bootstrap, topic),
        NODE_NAME=NODE,
        OOMSTREAM_SOURCES_ENABLED="files",
        OOMSTREAM_SOURCES_FILES_PATHS=str(SAMPLE),
        OOMSTREAM_KUBERNETES_MODE="kubeconfig",
        OOMSTREAM_KUBERNETES_KUBECONFIG_PATH=str(kubeconfig),
        OOMSTREAM_KUBERNETES_POD_WAIT_SECONDS="5",
        OOMSTREAM_SINKS_ENABLED="kafka,k8s_events",
    )


def _wait(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    return condition()


def _stop(service: subprocess.Popen[str]) -> str:
    service.send_signal(signal.SIGTERM)
    try:
        _, stderr = service.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        service.kill()
        _, stderr = service.communicate()
    return stderr


def _kills(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [e for e in records(bootstrap, topic) if e.get("type") == "oom_kill"]


def test_run_posts_an_event_on_the_pod_beside_kafka(
    tmp_path: Path, kafka_bootstrap: str, fake_api: ThreadedApi
) -> None:
    api = fake_api
    topic = unique_topic("i13-k8s-events")
    service = _start(tmp_path, kafka_bootstrap, topic, api)
    try:
        kills = _wait(lambda: _kills(kafka_bootstrap, topic))
        assert len(kills) == 1 and kills[0]["kubernetes"]["pod"] == "web-7d4b9c8f5d-x2x7q"
        events = _wait(lambda: api.call(api.server.objects, "v1", "Event", "payments"), timeout=20)
    finally:
        stderr = _stop(service)
    assert len(events) == 1, stderr[-3000:]
    event = events[0]
    assert event["involvedObject"]["uid"] == POD_UID
    assert event["involvedObject"]["fieldPath"] == "spec.containers{web}"
    assert event["reason"] == "OomstreamKernelOOMKill" and event["type"] == "Warning"
    assert event["message"].startswith(
        "process python3 (pid 3465) in container web killed by the kernel OOM killer at the pod limit 96Mi"
    )
    assert event["source"] == {"component": "oomstream", "host": NODE}


def test_forbidden_events_never_touch_kafka_delivery(
    tmp_path: Path, kafka_bootstrap: str, fake_api: ThreadedApi
) -> None:
    api = fake_api
    api.call(api.server.forbid, "create", "events")
    topic = unique_topic("i13-k8s-events-rbac")
    service = _start(tmp_path, kafka_bootstrap, topic, api)
    try:
        kills = _wait(lambda: _kills(kafka_bootstrap, topic))
        assert len(kills) == 1
        _wait(lambda: api.call(lambda: api.server.count_requests(status=403)), timeout=20)
    finally:
        stderr = _stop(service)
    assert api.call(api.server.objects, "v1", "Event", "payments") == []
    assert "RBAC does not allow verb 'create' on resource 'events'" in stderr
    assert service.returncode == 0, stderr[-3000:]
    json.dumps(kills)  # the published kill is a whole event


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_allows_oom")
def test_real_kernel_kills_in_a_pod_become_one_event_with_their_count(
    tmp_path: Path, kafka_bootstrap: str, fake_api: ThreadedApi
) -> None:
    """Two genuine OOM kills in one container's memory cgroup, read from /dev/kmsg: one Event on
    the pod, created by the first kill and patched to count 2 by the second."""
    from oomlab import cgroupfs_parts, container_id, memcg, pod_uid, run_oom

    api = fake_api
    uid, cid = pod_uid(), container_id()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.server.url, TOKEN)
    api.call(api.server.upsert, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})
    pod = make_pod(
        name="cache-6b7c8d9e0f-k2k2k",
        namespace="shop",
        uid=uid,
        node=NODE,
        containers=[ContainerSpec("redis", container_id=cid, memory_request="64Mi", memory_limit="64Mi")],
    )
    api.call(api.server.upsert, pod)
    topic = unique_topic("i13-k8s-events-kernel")
    service = start_oomstream(
        tmp_path,
        **kafka_settings(kafka_bootstrap, topic),
        NODE_NAME=NODE,
        OOMSTREAM_SOURCES_KMSG_START="end",
        OOMSTREAM_KUBERNETES_MODE="kubeconfig",
        OOMSTREAM_KUBERNETES_KUBECONFIG_PATH=str(kubeconfig),
        OOMSTREAM_SINKS_ENABLED="kafka,k8s_events",
    )
    try:
        time.sleep(4.0)  # connected to Kafka and the API, pods listed
        assert service.poll() is None, service.communicate()[1][-3000:]
        killed: list[int] = []
        for _ in range(2):
            with memcg(cgroupfs_parts("guaranteed", uid, cid), 64 << 20) as cgroup:
                killed += run_oom(cgroup, comm="redis-victim")
        assert len(killed) == 2

        def counted() -> list[dict[str, Any]]:
            events = api.call(api.server.objects, "v1", "Event", "shop")
            return events if events and events[0].get("count") == 2 else []

        events = _wait(counted, timeout=30)
    finally:
        stderr = _stop(service)
    assert len(events) == 1, stderr[-3000:]
    event = events[0]
    assert event["involvedObject"]["uid"] == uid
    assert event["involvedObject"]["fieldPath"] == "spec.containers{redis}"
    assert f"(pid {killed[1]})" in event["message"]  # the latest kill's process
    assert (
        "in container redis killed by the kernel OOM killer at the container limit 64Mi" in event["message"]
    )
    published = [e for e in records(kafka_bootstrap, topic) if e.get("type") == "oom_kill"]
    assert sorted(e["victim"]["pid"] for e in published) == sorted(killed)
