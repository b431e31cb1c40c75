"""The node's pod cache (streamer/enrich/pods.py): indexes, tombstones, workloads, quantities."""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
from typing import Any

import pytest
from k8sfake.objects import ContainerSpec, make_pod, terminated

from streamer.enrich.pods import PodCache, bare_container_id, derive_workload
from streamer.enrich.quantity import parse_quantity


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cid() -> str:
    return secrets.token_hex(32)


def status_id(pod: dict[str, Any], index: int = 0, key: str = "containerStatuses") -> str:
    return bare_container_id(pod["status"][key][index]["containerID"]) or ""


# -- quantities -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128Mi", 134217728),
        ("1Gi", 1073741824),
        ("500M", 500_000_000),
        ("1.5Gi", 1610612736),
        ("129e6", 129_000_000),
        ("129E6", 129_000_000),
        ("12345", 12345),
        ("1k", 1000),
        ("1Ki", 1024),
        ("100m", 1),  # 0.1 byte rounds up
        ("1500m", 2),
        ("0", 0),
        ("0.5", 1),
        (".5Ki", 512),
        ("1E", 10**18),
        ("2Ei", 2 * 2**60),
        ("1.000000000000000000001Gi", 1073741825),  # exact, then rounded up
        ("+1Mi", 2**20),
        (64, 64),
    ],
)
def test_quantity(text: object, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text", ["", "Mi", "-1Mi", "1MiB", "1 Gi", "abc", "1e", "1e100", "9Ei", "1..2", None, True, [], "1" * 100]
)
def test_quantity_invalid(text: object) -> None:
    assert parse_quantity(text) is None


def test_bad_quantity_counted_not_raised() -> None:
    pod = make_pod(
        name="web-1", containers=[ContainerSpec("app", memory_limit="lots", memory_request="64Mi")]
    )
    cache = PodCache()
    cache.replace([pod], "1")
    info = cache.pods()[0]
    assert info.containers[0].memory_limit_bytes is None
    assert info.containers[0].memory_request_bytes == 64 * 2**20
    assert info.pod_memory_limit_bytes is None
    assert cache.counts["bad_quantity"] == 1


# -- indexes ----------------------------------------------------------------------------------------


def test_lookup_by_container_id_current_previous_init_ephemeral() -> None:
    old = cid()
    pod = make_pod(
        name="web-1",
        containers=[
            ContainerSpec("app", restart_count=1, last_state=terminated(container_id=old)),
            ContainerSpec("sidecar"),
            ContainerSpec("setup", kind="init", state=terminated("Completed", exit_code=0)),
            ContainerSpec("debugger", kind="ephemeral", memory_limit=None, memory_request=None),
        ],
    )
    cache = PodCache()
    cache.replace([pod], "1")
    uid = pod["metadata"]["uid"]

    current = status_id(pod)
    match = cache.lookup(pod_uid=uid, container_id=current)
    assert match is not None and match.via == "container_id" and not match.deleted
    assert match.container is not None and match.container.name == "app" and match.container.kind == "regular"
    assert match.container.restart_count == 1 and old in match.container.previous_ids

    match = cache.lookup(pod_uid=None, container_id=old)
    assert match is not None and match.container is not None and match.container.name == "app"

    match = cache.lookup(pod_uid=None, container_id=status_id(pod, 1))
    assert match is not None and match.container is not None and match.container.name == "sidecar"

    init_id = status_id(pod, 0, "initContainerStatuses")
    match = cache.lookup(pod_uid=None, container_id=init_id.upper())  # case does not matter
    assert match is not None and match.container is not None
    assert (match.container.name, match.container.kind) == ("setup", "init")

    eph_id = status_id(pod, 0, "ephemeralContainerStatuses")
    match = cache.lookup(pod_uid=None, container_id=eph_id)
    assert match is not None and match.container is not None
    assert (match.container.name, match.container.kind) == ("debugger", "ephemeral")
    assert match.container.memory_limit_bytes is None

    # pod-level cgroup: no container id
    match = cache.lookup(pod_uid=uid, container_id=None)
    assert match is not None and match.via == "pod_uid" and match.container is None
    # unknown container id (not in any status yet) falls back to the pod
    match = cache.lookup(pod_uid=uid, container_id=cid())
    assert match is not None and match.via == "pod_uid" and match.container is None
    assert cache.lookup(pod_uid=None, container_id=cid()) is None
    assert cache.lookup(pod_uid="00000000-0000-0000-0000-000000000000", container_id=None) is None
    assert cache.lookup(pod_uid=None, container_id=None) is None


def test_container_ids_replaced_across_updates_stay_findable() -> None:
    first, second, third = cid(), cid(), cid()
    uid = "6d1c7a1e-0000-4000-8000-000000000001"
    cache = PodCache()
    cache.apply(
        "ADDED", make_pod(name="web-1", uid=uid, containers=[ContainerSpec("app", container_id=first)])
    )
    # restarted; this status no longer names the first id anywhere (lastState shows only the latest)
    cache.apply(
        "MODIFIED",
        make_pod(
            name="web-1", uid=uid, containers=[ContainerSpec("app", container_id=second, restart_count=1)]
        ),
    )
    cache.apply(
        "MODIFIED",
        make_pod(
            name="web-1",
            uid=uid,
            containers=[
                ContainerSpec(
                    "app", container_id=third, restart_count=2, last_state=terminated(container_id=second)
                )
            ],
        ),
    )
    for old in (first, second):
        match = cache.lookup(pod_uid=None, container_id=old)
        assert match is not None and match.container is not None and match.container.container_id == third
    container = cache.pods()[0].containers[0]
    assert container.previous_ids == (first, second)
    assert container.restart_count == 2
    assert len(cache) == 1


def test_previous_ids_are_bounded() -> None:
    uid = "6d1c7a1e-0000-4000-8000-000000000002"
    cache = PodCache()
    ids = [cid() for _ in range(20)]
    for n, container_id in enumerate(ids):
        cache.apply(
            "MODIFIED",
            make_pod(
                name="loop-1",
                uid=uid,
                containers=[ContainerSpec("app", container_id=container_id, restart_count=n)],
            ),
        )
    container = cache.pods()[0].containers[0]
    assert len(container.previous_ids) == 8 and container.previous_ids[-1] == ids[-2]
    assert cache.lookup(pod_uid=None, container_id=ids[0]) is None  # dropped from the index too
    # 19 earlier ids, 8 kept: 11 forgotten, each counted once (README "Bounds")
    assert cache.counts["previous_ids_forgotten"] == 11
    assert cache.lookup(pod_uid=None, container_id=ids[-3]) is not None
    assert len(cache._by_container) == 9


def test_static_pod_by_config_hash() -> None:
    config_hash = secrets.token_hex(16)
    pod = make_pod(name="kube-apiserver-node-a", namespace="kube-system", static_config_hash=config_hash)
    cache = PodCache()
    cache.replace([pod], "1")
    match = cache.lookup(pod_uid=config_hash, container_id=None)
    assert match is not None and match.via == "config_hash"
    assert match.pod.uid == pod["metadata"]["uid"] and match.pod.uid != config_hash
    assert match.pod.static and match.pod.owner == ("Node", "node-a") and match.pod.workload is None
    assert match.pod.config_hash == config_hash
    # the container id still resolves directly
    match = cache.lookup(pod_uid=config_hash, container_id=status_id(pod))
    assert match is not None and match.via == "container_id" and match.container is not None


def test_static_pod_mirror_recreated_keeps_hash_on_late_delete() -> None:
    config_hash = secrets.token_hex(16)
    old = make_pod(name="etcd-node-a", namespace="kube-system", static_config_hash=config_hash)
    new = make_pod(name="etcd-node-a", namespace="kube-system", static_config_hash=config_hash)
    cache = PodCache()
    cache.apply("ADDED", old)
    cache.apply("ADDED", new)
    cache.apply("DELETED", old)  # comes after the new mirror pod
    match = cache.lookup(pod_uid=config_hash, container_id=None)
    assert match is not None and match.pod.uid == new["metadata"]["uid"] and not match.deleted


# -- tombstones -------------------------------------------------------------------------------------


def test_deleted_pod_is_a_tombstone_until_it_expires() -> None:
    clock = FakeClock()
    cache = PodCache(tombstone_seconds=600, clock=clock)
    pod = make_pod(name="job-1", owner=("Job", "job"))
    cache.apply("ADDED", pod)
    container_id = status_id(pod)
    final = copy.deepcopy(pod)
    final["status"]["containerStatuses"][0]["state"] = terminated(container_id=container_id)
    clock.now += 5
    cache.apply("DELETED", final)
    assert cache.tombstones == 1 and len(cache) == 1
    match = cache.lookup(pod_uid=pod["metadata"]["uid"], container_id=container_id)
    assert match is not None and match.deleted and match.pod.deleted_at == 1005.0
    clock.now += 599
    assert cache.expire() == 0
    clock.now += 2
    assert cache.expire() == 1
    assert cache.tombstones == 0 and len(cache) == 0
    assert cache.lookup(pod_uid=pod["metadata"]["uid"], container_id=container_id) is None
    assert cache._by_container == {} and cache.counts["tombstones_expired"] == 1


def test_relist_turns_missing_pods_into_tombstones() -> None:
    clock = FakeClock()
    cache = PodCache(tombstone_seconds=60, clock=clock)
    a, b, c = (make_pod(name=f"web-{n}") for n in "abc")
    assert not cache.synced
    cache.replace([a, b], "10")
    assert cache.synced and cache.resource_version == "10" and len(cache) == 2
    clock.now += 1
    cache.replace([b, c], "20")
    assert len(cache) == 3 and cache.tombstones == 1
    match = cache.lookup(pod_uid=a["metadata"]["uid"], container_id=None)
    assert match is not None and match.deleted and match.pod.deleted_at == 1001.0
    # a tombstone is not re-deleted (its deletion time stays) by the next relist
    clock.now += 30
    cache.replace([b, c], "30")
    assert cache.get(a["metadata"]["uid"]).deleted_at == 1001.0  # type: ignore[union-attr]
    clock.now += 31
    cache.replace([b, c], "40")  # expiry also runs on updates
    assert cache.tombstones == 0 and len(cache) == 2


def test_pod_back_after_tombstone_is_live_again() -> None:
    cache = PodCache(clock=FakeClock())
    pod = make_pod(name="web-1")
    cache.replace([pod], "1")
    cache.replace([], "2")
    assert cache.tombstones == 1
    cache.apply("MODIFIED", pod)
    match = cache.lookup(pod_uid=pod["metadata"]["uid"], container_id=None)
    assert match is not None and not match.deleted and cache.tombstones == 0


def test_tombstones_capped() -> None:
    cache = PodCache(clock=FakeClock(), max_tombstones=3)
    pods = [make_pod(name=f"job-{n}") for n in range(5)]
    for pod in pods:
        cache.apply("ADDED", pod)
    for pod in pods:
        cache.apply("DELETED", pod)
    assert cache.tombstones == 3 and len(cache) == 3
    assert cache.lookup(pod_uid=pods[0]["metadata"]["uid"], container_id=None) is None
    assert cache.lookup(pod_uid=pods[4]["metadata"]["uid"], container_id=None) is not None


# -- workloads, allowlists, robustness ---------------------------------------------------------------


def test_workload_deployment() -> None:
    cache = PodCache()
    pod = make_pod(name="checkout-7d9f8-abcde")  # owner ReplicaSet checkout-<hash>
    cache.replace([pod], "1")
    info = cache.pods()[0]
    assert info.owner is not None and info.owner[0] == "ReplicaSet"
    assert info.workload == ("Deployment", "checkout")


@pytest.mark.parametrize(
    ("owner", "labels", "expected"),
    [
        (
            ("ReplicaSet", "api-server-5c7d8f9b6"),
            {"pod-template-hash": "5c7d8f9b6"},
            ("Deployment", "api-server"),
        ),
        (
            ("ReplicaSet", "api-server-5c7d8f9b6"),
            {"pod-template-hash": "other"},
            ("ReplicaSet", "api-server-5c7d8f9b6"),
        ),
        (("ReplicaSet", "bare-rs"), {}, ("ReplicaSet", "bare-rs")),
        (("Job", "nightly-report-29012345"), {}, ("CronJob", "nightly-report")),
        (("Job", "migrate-db"), {}, ("Job", "migrate-db")),
        (("Job", "build-1234"), {}, ("Job", "build-1234")),  # too few digits for a CronJob
        (("StatefulSet", "kafka"), {}, ("StatefulSet", "kafka")),
        (("DaemonSet", "fluent-bit"), {}, ("DaemonSet", "fluent-bit")),
        (("ReplicationController", "legacy"), {}, ("ReplicationController", "legacy")),
        (("Node", "node-a"), {}, None),
        (None, {}, None),
    ],
)
def test_derive_workload(
    owner: tuple[str, str] | None, labels: dict[str, str], expected: tuple[str, str] | None
) -> None:
    assert derive_workload(owner, labels) == expected


def test_workload_from_pods() -> None:
    cache = PodCache()
    pods = {
        "cron": make_pod(name="report-29012345-x7k2p", owner=("Job", "report-29012345")),
        "job": make_pod(name="migrate-x7k2p", owner=("Job", "migrate")),
        "sts": make_pod(name="kafka-0", owner=("StatefulSet", "kafka")),
        "bare": make_pod(name="debug", owner=None),
    }
    cache.replace(list(pods.values()), "1")
    by_name = {info.name: info for info in cache.pods()}
    assert by_name["report-29012345-x7k2p"].workload == ("CronJob", "report")
    assert by_name["migrate-x7k2p"].workload == ("Job", "migrate")
    assert by_name["kafka-0"].workload == ("StatefulSet", "kafka")
    assert by_name["debug"].workload is None and by_name["debug"].owner is None


def test_allowlists() -> None:
    labels = {
        "app.kubernetes.io/name": "web",
        "app.kubernetes.io/version": "1.2.3",
        "team": "payments",
        "pod-template-hash": "abc",
        "security.istio.io/tlsMode": "istio",
    }
    annotations = {"prometheus.io/scrape": "true", "owner-email": "a@example.com", "huge": "x" * 10000}
    pod = make_pod(name="web-1", labels=labels, annotations=annotations)
    info_default = PodCache()
    info_default.replace([pod], "1")
    default = info_default.pods()[0]
    assert dict(default.labels) == {
        "app.kubernetes.io/name": "web",
        "app.kubernetes.io/version": "1.2.3",
        "team": "payments",
    }
    assert dict(default.annotations) == {}
    custom = PodCache(label_allowlist=["team"], annotation_allowlist=["owner-email"])
    custom.replace([pod], "1")
    assert dict(custom.pods()[0].labels) == {"team": "payments"}
    assert dict(custom.pods()[0].annotations) == {"owner-email": "a@example.com"}


def test_keys_left_out_by_the_allowlists_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    labels = {"team": "payments", "pod-template-hash": "abc", "security.istio.io/tlsMode": "istio"}
    cache = PodCache(label_allowlist=["team"], annotation_allowlist=())
    with caplog.at_level(logging.INFO, logger="streamer.enrich.pods"):
        cache.replace([make_pod(name="web-1", labels=labels, annotations={"note": "x"})], "1")
        cache.apply("MODIFIED", make_pod(name="web-2", labels=labels, annotations={"note": "y"}))
    assert cache.counts["label_keys_not_copied"] == 2 and cache.counts["annotation_keys_not_copied"] == 1
    messages = [r.getMessage() for r in caplog.records if "not copied" in r.getMessage()]
    assert messages == [
        "pod label keys not copied onto events (not in kubernetes.label_allowlist): "
        "pod-template-hash, security.istio.io/tlsMode",
        "pod annotation keys not copied onto events (not in kubernetes.annotation_allowlist): note",
    ]


def test_pod_memory_limit() -> None:
    cache = PodCache()
    guaranteed = make_pod(
        name="g-1",
        containers=[
            ContainerSpec("a", memory_request="128Mi", memory_limit="128Mi"),
            ContainerSpec("b", memory_request="1Gi", memory_limit="1Gi"),
            ContainerSpec("init", kind="init", memory_request="256Mi", memory_limit="256Mi"),
        ],
    )
    big_init = make_pod(
        name="i-1",
        containers=[
            ContainerSpec("a", memory_limit="128Mi"),
            ContainerSpec("init", kind="init", memory_limit="2Gi"),
        ],
    )
    unlimited = make_pod(name="u-1", containers=[ContainerSpec("a"), ContainerSpec("b", memory_limit=None)])
    init_unlimited = make_pod(
        name="n-1", containers=[ContainerSpec("a"), ContainerSpec("init", kind="init", memory_limit=None)]
    )
    ephemeral_ignored = make_pod(
        name="e-1", containers=[ContainerSpec("a"), ContainerSpec("dbg", kind="ephemeral", memory_limit=None)]
    )
    overhead = make_pod(name="o-1", containers=[ContainerSpec("a")])
    overhead["spec"]["overhead"] = {"memory": "120Mi", "cpu": "250m"}
    sidecar = make_pod(
        name="s-1",
        containers=[
            ContainerSpec("a", memory_limit="100Mi"),
            ContainerSpec("proxy", kind="init", memory_limit="50Mi"),
            ContainerSpec("setup", kind="init", memory_limit="120Mi"),
        ],
    )
    sidecar["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    cache.replace(
        [guaranteed, big_init, unlimited, init_unlimited, ephemeral_ignored, overhead, sidecar], "1"
    )
    limits = {info.name: info.pod_memory_limit_bytes for info in cache.pods()}
    mi = 2**20
    assert limits == {
        "g-1": 128 * mi + 1024 * mi,
        "i-1": 2048 * mi,
        "u-1": None,
        "n-1": None,
        "e-1": 128 * mi,
        "o-1": 248 * mi,
        "s-1": 170 * mi,  # max(100 + 50, 50 + 120)
    }


@pytest.mark.parametrize(
    "obj",
    [
        None,
        "pod",
        {},
        {"metadata": None},
        {"metadata": {"name": "x", "namespace": "y"}},  # no uid
        {"metadata": {"uid": 5, "name": "x", "namespace": "y"}},
    ],
)
def test_bad_objects_counted_and_skipped(obj: Any) -> None:
    cache = PodCache()
    cache.apply("ADDED", obj)
    cache.replace([obj, make_pod(name="ok-1")], "1")
    assert len(cache) == 1 and cache.counts["bad_object"] == 2


def test_odd_shapes_do_not_raise() -> None:
    pod = make_pod(name="odd-1")
    pod["spec"]["containers"].append("not a container")
    pod["spec"]["containers"][0]["resources"] = {"limits": "128Mi"}
    pod["status"]["containerStatuses"][0]["containerID"] = "containerd://short"
    pod["status"]["containerStatuses"][0]["restartCount"] = "3"
    pod["metadata"]["labels"] = ["x"]
    pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet"}, "junk"]
    cache = PodCache()
    cache.apply("ADDED", pod)
    info = cache.pods()[0]
    assert info.containers[0].container_id is None and info.containers[0].restart_count is None
    assert info.containers[0].memory_limit_bytes is None and info.owner is None and dict(info.labels) == {}
    cache.apply("BOOKMARK", {"metadata": {"resourceVersion": "5"}})
    cache.apply("ERROR", {"code": 410})
    cache.apply("WHATEVER", pod)
    assert cache.counts["event_BOOKMARK"] == 1 and cache.counts["event_ERROR"] == 1
    assert cache.counts["event_unknown"] == 1


def test_bare_container_id() -> None:
    raw = "a" * 64
    assert bare_container_id("containerd://" + raw) == raw
    assert bare_container_id("cri-o://" + raw.upper()) == raw
    assert bare_container_id(raw) == raw
    assert bare_container_id("") is None and bare_container_id(None) is None
    assert bare_container_id("docker://abc") is None


async def test_wait_for_change() -> None:
    cache = PodCache()
    assert await cache.wait_for_change(0.01) is False
    assert await cache.wait_for_change(0) is False

    async def later() -> None:
        await asyncio.sleep(0.05)
        cache.apply("ADDED", make_pod(name="web-1"))

    task = asyncio.create_task(later())
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await cache.wait_for_change(2.0) is True
    assert loop.time() - start < 1.0
    await task
