"""Kubernetes enrichment of OOM events (streamer/enrich/enricher.py): statuses, the bounded wait,
the `kubernetes`/`enrichment`/`analysis` shapes, and schema validity on real captures."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from eventschema import validate, validate_k8s_event
from k8sfake.objects import ContainerSpec, make_pod, terminated

from parsers.cgroup import limit_scope
from parsers.events import (
    EVENT_TYPE_K8S_OOM_KILLED,
    CgroupInfo,
    K8sEvent,
    MemcgUsage,
    OomEvent,
    Source,
    Victim,
    event_to_dict,
)
from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner
from streamer.enrich.enricher import Enricher, analyse
from streamer.enrich.pods import PodCache, PodMatch, bare_container_id

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "real"
MI = 2**20


def cgroup_for(
    task_memcg: str | None, oom_memcg: str | None = None, *, global_oom: bool = False
) -> CgroupInfo:
    return CgroupInfo.identified(
        task_memcg,
        task_memcg=task_memcg,
        oom_memcg=oom_memcg,
        limit_scope=limit_scope(task_memcg, oom_memcg, global_oom=global_oom)
        if task_memcg or global_oom
        else None,
        source="report" if task_memcg else "none",
    )


def oom_event(
    cgroup: CgroupInfo,
    *,
    limit_kb: int | None = 131072,
    rss_kb: tuple[int | None, int | None, int | None] = (100000, 2000, 0),
) -> OomEvent:
    anon, file, shmem = rss_kb
    return OomEvent(
        event_id="0b5f6a10-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        time="2026-11-27T10:05:00.000000Z",
        time_source="kmsg_boottime",
        kernel_time=1234.5,
        host="node-a",
        boot_id=None,
        victim=Victim(pid=4242, comm="python3", anon_rss_kb=anon, file_rss_kb=file, shmem_rss_kb=shmem),
        trigger=None,
        constraint="CONSTRAINT_MEMCG" if limit_kb is not None else "CONSTRAINT_NONE",
        cgroup=cgroup,
        memcg=MemcgUsage(usage_kb=limit_kb, limit_kb=limit_kb, failcnt=3) if limit_kb is not None else None,
        tasks=None,
        tasks_total=None,
        group_kill=False,
        partial=False,
        partial_reason=None,
        kill_message="Memory cgroup out of memory" if limit_kb is not None else "Out of memory",
        reaped=None,
        memcg_stats=None,
        mem_info=None,
        source=Source(kind="kmsg", format="kmsg", position={"seq": 7}),
    )


def container_path(pod_uid: str, container_id: str, qos: str = "burstable") -> str:
    return f"/kubepods/{qos}/pod{pod_uid}/{container_id}"


def systemd_path(pod_uid: str, container_id: str) -> str:
    u = pod_uid.replace("-", "_")
    return (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/"
        f"cri-containerd-{container_id}.scope"
    )


def check(event: OomEvent) -> dict[str, Any]:
    data = event_to_dict(event)
    validate(data)
    return data


@pytest.fixture
def web() -> dict[str, Any]:
    return make_pod(
        name="checkout-7d9f8-abcde",
        namespace="shop",
        labels={"app.kubernetes.io/name": "checkout", "team": "payments", "pod-template-hash": "ignored"},
        containers=[
            ContainerSpec(
                "app",
                memory_request="96Mi",
                memory_limit="128Mi",
                restart_count=2,
                last_state=terminated(container_id=secrets.token_hex(32)),
            ),
            ContainerSpec("proxy", memory_request="32Mi", memory_limit="64Mi"),
        ],
    )


def synced_cache(*pods: dict[str, Any], **kwargs: Any) -> PodCache:
    cache = PodCache(**kwargs)
    cache.replace(list(pods), "1")
    return cache


# -- statuses ---------------------------------------------------------------------------------------


async def test_ok_by_container_id(web: dict[str, Any]) -> None:
    uid = web["metadata"]["uid"]
    app_id = bare_container_id(web["status"]["containerStatuses"][0]["containerID"])
    assert app_id is not None
    enricher = Enricher(synced_cache(web), node="node-a")
    path = container_path(uid, app_id)
    event = await enricher(oom_event(cgroup_for(path, path)))
    data = check(event)
    k = data["kubernetes"]
    assert k == {
        "namespace": "shop",
        "pod": "checkout-7d9f8-abcde",
        "pod_uid": uid,
        "container": "app",
        "container_id": app_id,
        "node": "node-a",
        "qos_class": "Burstable",
        "labels": {"app.kubernetes.io/name": "checkout", "team": "payments"},
        "annotations": {},
        "owner": {"kind": "ReplicaSet", "name": web["metadata"]["ownerReferences"][0]["name"]},
        "workload": {"kind": "Deployment", "name": "checkout"},
        "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
        "memory_request_bytes": 96 * MI,
        "memory_limit_bytes": 128 * MI,
        "pod_memory_limit_bytes": 192 * MI,
        "restart_count": 2,
        "static_pod": False,
        "deleted": False,
    }
    assert data["enrichment"] == {"status": "ok", "source": "api_watch", "waited_seconds": 0.0}
    assert data["analysis"] == {
        "limit_fired": "container_limit",
        "limit_bytes": 128 * MI,
        "rss_bytes": 102000 * 1024,
        "rss_fraction_of_limit": round(102000 / 131072, 4),
    }
    assert enricher.counts["ok"] == 1


async def test_ok_systemd_path_and_previous_container(web: dict[str, Any]) -> None:
    uid = web["metadata"]["uid"]
    old_id = bare_container_id(
        web["status"]["containerStatuses"][0]["lastState"]["terminated"]["containerID"]
    )
    assert old_id is not None
    enricher = Enricher(synced_cache(web), node="node-a")
    path = systemd_path(uid, old_id)
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    assert data["kubernetes"]["container"] == "app" and data["kubernetes"]["container_id"] != old_id
    assert data["enrichment"]["status"] == "ok"


async def test_pod_level_cgroup_has_no_container_fields(web: dict[str, Any]) -> None:
    uid = web["metadata"]["uid"]
    pod_path = f"/kubepods/burstable/pod{uid}"
    enricher = Enricher(synced_cache(web), node="node-a")
    data = check(await enricher(oom_event(cgroup_for(pod_path, pod_path), limit_kb=196608)))
    k = data["kubernetes"]
    assert k["pod_uid"] == uid and k["pod"] == "checkout-7d9f8-abcde"
    for name in (
        "container",
        "container_id",
        "image",
        "memory_request_bytes",
        "memory_limit_bytes",
        "restart_count",
    ):
        assert k[name] is None
    assert k["pod_memory_limit_bytes"] == 192 * MI
    assert data["analysis"]["limit_fired"] == "pod_limit" and data["analysis"]["limit_bytes"] == 192 * MI
    assert data["enrichment"]["status"] == "ok"


async def test_static_pod_api_uid_not_config_hash() -> None:
    config_hash = secrets.token_hex(16)
    pod = make_pod(
        name="kube-apiserver-node-a",
        namespace="kube-system",
        static_config_hash=config_hash,
        containers=[ContainerSpec("kube-apiserver", memory_limit=None, memory_request="512Mi")],
    )
    container_id = secrets.token_hex(32)  # a container the status does not name (yet): pod match only
    path = container_path(config_hash, container_id)
    enricher = Enricher(synced_cache(pod), node="node-a", wait_seconds=0.05)
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    assert data["cgroup"]["pod_uid"] == config_hash
    k = data["kubernetes"]
    assert k["pod_uid"] == pod["metadata"]["uid"] and k["static_pod"] is True
    assert k["owner"] == {"kind": "Node", "name": "node-a"} and k["workload"] is None
    assert k["container"] is None and k["pod_memory_limit_bytes"] is None
    assert data["enrichment"]["status"] == "ok"


async def test_deleted_pod_from_tombstone() -> None:
    pod = make_pod(name="report-29012345-x7k2p", owner=("Job", "report-29012345"))
    uid = pod["metadata"]["uid"]
    container_id = bare_container_id(pod["status"]["containerStatuses"][0]["containerID"])
    assert container_id is not None
    cache = synced_cache(pod)
    cache.apply("DELETED", pod)
    enricher = Enricher(cache, node="node-a")
    path = container_path(uid, container_id)
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    assert data["enrichment"] == {"status": "ok", "source": "tombstone", "waited_seconds": 0.0}
    assert data["kubernetes"]["deleted"] is True
    assert data["kubernetes"]["workload"] == {"kind": "CronJob", "name": "report"}


async def test_disabled() -> None:
    path = container_path("6d1c7a1e-0000-4000-8000-000000000001", "a" * 64)
    enricher = Enricher(None, node="node-a")
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    assert data["kubernetes"] is None
    assert data["enrichment"] == {"status": "disabled", "source": None}
    assert data["analysis"]["limit_fired"] == "container_limit"  # analysis does not need Kubernetes
    assert enricher.counts["disabled"] == 1


async def test_no_cgroup() -> None:
    enricher = Enricher(synced_cache(), node="node-a")
    data = check(await enricher(oom_event(CgroupInfo(), limit_kb=None)))
    assert data["kubernetes"] is None and data["enrichment"] == {"status": "no_cgroup", "source": None}
    assert data["analysis"] == {
        "limit_fired": "unknown",
        "limit_bytes": None,
        "rss_bytes": 102000 * 1024,
        "rss_fraction_of_limit": None,
    }


@pytest.mark.parametrize(
    "path",
    [
        "/system.slice/nginx.service",
        "/user.slice/user-1000.slice/session-3.scope",
        "/docker/" + "b" * 64,  # a plain Docker container, not in the cache
        "/kubepods/burstable",
    ],
)
async def test_not_kubernetes(path: str) -> None:
    enricher = Enricher(synced_cache(), node="node-a", wait_seconds=5.0)
    start = time.monotonic()
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    assert time.monotonic() - start < 1.0  # no wait for these
    assert data["kubernetes"] is None and data["enrichment"] == {"status": "not_kubernetes", "source": None}
    assert data["analysis"]["limit_fired"] in ("cgroup_limit", "node_allocatable")


async def test_global_oom_analysis(web: dict[str, Any]) -> None:
    uid = web["metadata"]["uid"]
    app_id = bare_container_id(web["status"]["containerStatuses"][0]["containerID"])
    assert app_id is not None
    enricher = Enricher(synced_cache(web), node="node-a")
    cgroup = cgroup_for(container_path(uid, app_id), None, global_oom=True)
    data = check(await enricher(oom_event(cgroup, limit_kb=None)))
    assert data["analysis"] == {
        "limit_fired": "node",
        "limit_bytes": None,
        "rss_bytes": 102000 * 1024,
        "rss_fraction_of_limit": None,
    }
    assert data["kubernetes"]["container"] == "app"


async def test_pod_appears_during_wait() -> None:
    cache = synced_cache()
    pod = make_pod(name="fresh-1")
    uid = pod["metadata"]["uid"]
    container_id = bare_container_id(pod["status"]["containerStatuses"][0]["containerID"])
    assert container_id is not None
    path = container_path(uid, container_id)

    async def arrive() -> None:
        await asyncio.sleep(0.1)
        cache.apply("ADDED", make_pod(name="other-1"))  # an unrelated change first: the wait goes on
        await asyncio.sleep(0.1)
        cache.apply("ADDED", pod)

    enricher = Enricher(cache, node="node-a", wait_seconds=3.0)
    task = asyncio.create_task(arrive())
    start = time.monotonic()
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    elapsed = time.monotonic() - start
    await task
    assert data["enrichment"]["status"] == "ok" and data["kubernetes"]["pod"] == "fresh-1"
    assert 0.15 < data["enrichment"]["waited_seconds"] < 1.0 and elapsed < 1.0


async def test_container_status_arrives_during_wait() -> None:
    """The pod is known but its new container's id is not: wait for the status update."""
    uid = "6d1c7a1e-0000-4000-8000-0000000000aa"
    new_id = secrets.token_hex(32)
    cache = synced_cache(
        make_pod(name="web-1", uid=uid, containers=[ContainerSpec("app", container_id=None)])
    )

    async def arrive() -> None:
        await asyncio.sleep(0.2)
        cache.apply(
            "MODIFIED",
            make_pod(name="web-1", uid=uid, containers=[ContainerSpec("app", container_id=new_id)]),
        )

    task = asyncio.create_task(arrive())
    path = container_path(uid, new_id)
    data = check(await Enricher(cache, node="node-a")(oom_event(cgroup_for(path, path))))
    await task
    assert data["kubernetes"]["container"] == "app" and data["kubernetes"]["container_id"] == new_id
    assert data["enrichment"]["waited_seconds"] >= 0.15


async def test_cache_synced_during_wait(web: dict[str, Any]) -> None:
    cache = PodCache()
    uid = web["metadata"]["uid"]

    async def first_list() -> None:
        await asyncio.sleep(0.2)
        cache.replace([web], "7")

    task = asyncio.create_task(first_list())
    path = f"/kubepods/burstable/pod{uid}"
    data = check(await Enricher(cache, node="node-a")(oom_event(cgroup_for(path, path))))
    await task
    assert data["enrichment"]["status"] == "ok" and data["enrichment"]["waited_seconds"] > 0


async def test_found_before_first_list_does_not_wait(web: dict[str, Any]) -> None:
    cache = PodCache()
    cache.apply("ADDED", web)  # a watch event before the first list completed
    assert not cache.synced
    path = f"/kubepods/burstable/pod{web['metadata']['uid']}"
    start = time.monotonic()
    data = check(await Enricher(cache, node="node-a")(oom_event(cgroup_for(path, path))))
    assert time.monotonic() - start < 0.5
    assert data["enrichment"] == {"status": "ok", "source": "api_watch", "waited_seconds": 0.0}


async def test_pod_never_appears_is_bounded() -> None:
    cache = synced_cache()
    stop = asyncio.Event()

    async def churn() -> None:  # unrelated changes keep waking the waiter
        n = 0
        while not stop.is_set():
            cache.apply("ADDED", make_pod(name=f"noise-{n}"))
            n += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(churn())
    path = container_path("6d1c7a1e-0000-4000-8000-0000000000bb", "c" * 64)
    enricher = Enricher(cache, node="node-a", wait_seconds=0.5)
    start = time.monotonic()
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    elapsed = time.monotonic() - start
    stop.set()
    await task
    assert 0.45 <= elapsed < 0.5 + 0.3
    assert data["kubernetes"] is None
    assert data["enrichment"]["status"] == "pod_not_found" and data["enrichment"]["source"] is None
    assert 0.45 <= data["enrichment"]["waited_seconds"] <= 0.8
    assert data["analysis"]["limit_fired"] == "container_limit"
    assert enricher.counts["pod_not_found"] == 1


async def test_never_synced_is_bounded_with_a_frozen_clock() -> None:
    """Even a clock that never advances cannot make the wait unbounded."""
    path = container_path("6d1c7a1e-0000-4000-8000-0000000000cc", "d" * 64)
    enricher = Enricher(PodCache(), node="node-a", wait_seconds=0.2, clock=lambda: 5.0)
    start = time.monotonic()
    data = check(await enricher(oom_event(cgroup_for(path, path))))
    assert time.monotonic() - start < 0.6
    assert data["enrichment"]["status"] == "pod_not_found" and enricher.counts["not_synced"] == 1


async def test_enrichment_error_never_raises(web: dict[str, Any]) -> None:
    class Broken(PodCache):
        def lookup(self, *, pod_uid: str | None, container_id: str | None) -> PodMatch | None:
            raise RuntimeError("boom")

    cache = Broken()
    cache.replace([web], "1")
    path = container_path(web["metadata"]["uid"], "e" * 64)
    data = check(await Enricher(cache, node="node-a")(oom_event(cgroup_for(path, path))))
    assert data["enrichment"]["status"] == "pod_not_found" and data["kubernetes"] is None
    assert data["analysis"] is not None


# -- analysis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("container", "container_limit"),
        ("pod", "pod_limit"),
        ("qos", "node_allocatable"),
        ("kubepods", "node_allocatable"),
        ("global", "node"),
        ("other", "cgroup_limit"),
        (None, "unknown"),
    ],
)
def test_analyse_limit_fired(scope: str | None, expected: str) -> None:
    event = oom_event(CgroupInfo(limit_scope=scope), limit_kb=262144)
    result = analyse(event, None)
    assert result is not None and result.limit_fired == expected
    assert result.limit_bytes == (None if scope == "global" else 262144 * 1024)


def test_analyse_edge_cases() -> None:
    unlimited = oom_event(CgroupInfo(limit_scope="other"), limit_kb=9007199254740988)
    assert dataclasses.asdict(analyse(unlimited, None)) == {  # type: ignore[arg-type]
        "limit_fired": "cgroup_limit",
        "limit_bytes": None,
        "rss_bytes": 102000 * 1024,
        "rss_fraction_of_limit": None,
    }
    no_victim = dataclasses.replace(oom_event(CgroupInfo(limit_scope="container")), victim=None)
    assert dataclasses.asdict(analyse(no_victim, None)) == {  # type: ignore[arg-type]
        "limit_fired": "container_limit",
        "limit_bytes": 131072 * 1024,
        "rss_bytes": None,
        "rss_fraction_of_limit": None,
    }
    old_kernel = oom_event(CgroupInfo(limit_scope="container"), limit_kb=1000, rss_kb=(900, 100, None))
    result = analyse(old_kernel, None)
    assert result is not None and result.rss_bytes == 1000 * 1024 and result.rss_fraction_of_limit == 1.0


def test_analyse_cross_checks_an_unrecognised_cgroup_against_the_pod(web: dict[str, Any]) -> None:
    cache = synced_cache(web)
    app_id = bare_container_id(web["status"]["containerStatuses"][0]["containerID"])
    match = cache.lookup(pod_uid=None, container_id=app_id)
    assert match is not None
    event = oom_event(CgroupInfo(limit_scope="other"), limit_kb=131072)  # 128Mi = the container's limit
    assert analyse(event, match).limit_fired == "container_limit"  # type: ignore[union-attr]
    event = oom_event(CgroupInfo(limit_scope="other"), limit_kb=196608)  # 192Mi = the pod's limit
    assert analyse(event, match).limit_fired == "pod_limit"  # type: ignore[union-attr]
    event = oom_event(CgroupInfo(limit_scope="other"), limit_kb=1000)
    assert analyse(event, match).limit_fired == "cgroup_limit"  # type: ignore[union-attr]


# -- signals ----------------------------------------------------------------------------------------


def k8s_signal(pod_uid: str | None, container_id: str | None) -> K8sEvent:
    return K8sEvent(
        event_id="1b5f6a10-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        type=EVENT_TYPE_K8S_OOM_KILLED,
        time="2026-11-27T10:05:00.000000Z",
        host="node-a",
        reason="OOMKilled",
        message=None,
        namespace="shop",
        pod="checkout-7d9f8-abcde",
        pod_uid=pod_uid,
        container="app",
        container_id=container_id,
        pid=None,
        comm=None,
        occurrence=1,
        details={"exit_code": 137},
        origin={
            "kind": "Pod",
            "api_version": "v1",
            "uid": pod_uid,
            "name": "checkout-7d9f8-abcde",
            "namespace": "shop",
            "resource_version": "5",
            "component": None,
        },
        source=Source(kind="k8s_watch", format=None, position=None),
    )


async def test_enrich_signal(web: dict[str, Any]) -> None:
    uid = web["metadata"]["uid"]
    app_id = bare_container_id(web["status"]["containerStatuses"][0]["containerID"])
    enricher = Enricher(synced_cache(web), node="node-a", wait_seconds=0.2)
    signal = await enricher.enrich_signal(k8s_signal(uid, app_id))
    assert signal.kubernetes is not None and signal.kubernetes.container == "app"
    assert signal.enrichment is not None
    assert dataclasses.asdict(signal.enrichment) == {
        "status": "ok",
        "source": "api_watch",
        "waited_seconds": 0.0,
    }
    validate_k8s_event(event_to_dict(signal))

    by_pod = await enricher.enrich_signal(k8s_signal(uid, None))
    assert by_pod.kubernetes is not None and by_pod.kubernetes.container is None

    missing = await enricher.enrich_signal(k8s_signal("6d1c7a1e-0000-4000-8000-0000000000dd", None))
    assert missing.kubernetes is None and missing.enrichment is not None
    assert missing.enrichment.status == "pod_not_found"
    validate_k8s_event(event_to_dict(missing))

    node_scoped = k8s_signal(None, None)
    assert await enricher.enrich_signal(node_scoped) is node_scoped
    assert enricher.counts["signal_ok"] == 2 and enricher.counts["signal_pod_not_found"] == 1
    assert enricher.counts["ok"] == 0

    disabled = await Enricher(None, node="node-a").enrich_signal(k8s_signal(uid, app_id))
    assert disabled.enrichment is not None and disabled.kubernetes is None
    assert dataclasses.asdict(disabled.enrichment) == {"status": "disabled", "source": None}


# -- real captures ----------------------------------------------------------------------------------


def real_events(name: str) -> list[OomEvent]:
    meta = json.loads((DATA / f"{name}.meta.json").read_text())
    framer = Framer("auto", year=int(meta["captured_at_utc"][:4]), tz=None)
    framer.boot_id = meta["environment"].get("boot_id", "").replace("-", "") or None
    scanner = LogScanner(framer, Assembler())
    data = (DATA / f"{name}.kmsg").read_bytes()
    events = scanner.feed(data) + scanner.finish() + scanner.assembler.flush()
    return [event for event in events if isinstance(event, OomEvent)]


def pods_for(events: list[OomEvent]) -> list[dict[str, Any]]:
    """One Pod per pod UID in the events, whose containers carry the events' container ids."""
    by_uid: dict[str, list[str]] = {}
    for event in events:
        if event.cgroup.pod_uid is not None:
            ids = by_uid.setdefault(event.cgroup.pod_uid, [])
            if event.cgroup.container_id is not None and event.cgroup.container_id not in ids:
                ids.append(event.cgroup.container_id)
    return [
        make_pod(
            name=f"real-{n}",
            uid=uid,
            containers=[
                ContainerSpec(f"c{i}", container_id=container_id, runtime="cri-o", memory_limit="64Mi")
                for i, container_id in enumerate(ids)
            ],
        )
        for n, (uid, ids) in enumerate(by_uid.items())
    ]


REAL = sorted(path.name.removesuffix(".meta.json") for path in DATA.glob("*.meta.json"))


@pytest.mark.parametrize("name", REAL)
async def test_real_capture_enriched_events_validate(name: str) -> None:
    events = real_events(name)
    assert events
    enricher = Enricher(synced_cache(*pods_for(events)), node="vm", wait_seconds=0.05)
    for event in events:
        data = check(await enricher(event))
        status = data["enrichment"]["status"]
        if event.cgroup.pod_uid is not None:
            assert status == "ok"
            assert data["kubernetes"]["pod_uid"] == event.cgroup.pod_uid
            assert data["kubernetes"]["container_id"] == event.cgroup.container_id
        else:
            assert status == "no_cgroup" and data["kubernetes"] is None
        assert data["analysis"] is not None


async def test_real_pod_limit_capture() -> None:
    (event,) = real_events("s07-pod-limit")
    enricher = Enricher(synced_cache(*pods_for([event])), node="vm")
    data = check(await enricher(event))
    assert data["analysis"] == {
        "limit_fired": "pod_limit",
        "limit_bytes": 100663296,
        "rss_bytes": (69376 + 5936) * 1024,
        "rss_fraction_of_limit": round((69376 + 5936) / 98304, 4),
    }
    assert data["kubernetes"]["container"] == "c0"


async def test_typed_enrichment_round_trips_byte_identical(web: dict[str, Any]) -> None:
    """`kubernetes`, `enrichment` and `analysis` are typed on the event; their JSON is the schema's,
    and an event read back (spool replay, consumers) is typed again and serializes to the same bytes."""
    import orjson

    from parsers.events import Analysis, Enrichment, PodMetadata, WaitedEnrichment, any_event_from_dict

    uid = web["metadata"]["uid"]
    app_id = bare_container_id(web["status"]["containerStatuses"][0]["containerID"])
    assert app_id is not None
    path = container_path(uid, app_id)
    found = await Enricher(synced_cache(web), node="node-a")(oom_event(cgroup_for(path, path)))
    disabled = await Enricher(None, node="node-a")(oom_event(cgroup_for(path, path)))
    assert isinstance(found.kubernetes, PodMetadata) and isinstance(found.analysis, Analysis)
    assert isinstance(found.enrichment, WaitedEnrichment)  # looked up: the JSON has waited_seconds
    assert type(disabled.enrichment) is Enrichment  # not looked up: it has not
    for event in (found, disabled):
        raw = orjson.dumps(event)
        again = any_event_from_dict(orjson.loads(raw))
        assert again == event and orjson.dumps(again) == raw
    assert b'"waited_seconds"' not in orjson.dumps(disabled.enrichment)
