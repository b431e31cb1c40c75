"""Timeline fixtures with known answers: schema-valid events built from a real kernel report.

The kernel kill is the parsed sample streamer/samples/6.18-pod-limit.dmesg, given each fixture's
time, node, pod and analysis, so the report details (victim, trigger, memcg, tasks) are real.

The set (``fixture_set``), T0 = 2026-12-04T14:00:00Z:
  A  payments/Deployment/web  kill +60s  container_limit  k8s_oom_killed +2s         visible
  B  payments/Deployment/web  kill +300s container_limit  no signal, summary says    NOT visible
  C  payments/Deployment/web  kill +600s pod_limit        group kill: 2 victims; an OOMKilled
                                                          signal published earlier under an id
                                                          the summary lists as merged
  D  default/Deployment/api   kill +120s pod_limit        k8s_oom_killing (NPD) +1s
  E  node-b, no pod           kill +900s node (global)
  F  batch/Job/report         eviction +450s, no kernel kill
Kills 6 (web 4, api 1, node 1), incidents 6.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from parsers.events import IncidentEvent, K8sEvent, Source, event_to_dict, format_time, make_signal_id
from streamer.inputs import ScanOptions, iter_log_events

SAMPLE = Path(__file__).resolve().parents[1] / "streamer" / "samples" / "6.18-pod-limit.dmesg"
T0 = 1796392800.0  # 2026-12-04T14:00:00Z
MIB = 1 << 20


def _base_kill() -> Any:
    return next(iter(iter_log_events([str(SAMPLE)], ScanOptions())))


_BASE = None


def kill_event(
    *,
    at: float,
    host: str,
    namespace: str | None,
    workload: tuple[str, str] | None,
    pod: str | None,
    container: str | None,
    limit_fired: str,
    rss_mib: float,
    limit_mib: float | None,
    pid: int,
    comm: str,
    incident_id: str | None,
    pod_uid: str = "069f04fa-7f16-4864-9226-0642f8fc2327",
) -> dict[str, Any]:
    global _BASE
    if _BASE is None:
        _BASE = _base_kill()
    base = _BASE
    victim = dataclasses.replace(
        base.victim, pid=pid, comm=comm, anon_rss_kb=int(rss_mib * 1024), file_rss_kb=0, shmem_rss_kb=0
    )
    kube = None
    enrichment = {"status": "not_kubernetes", "source": None}
    if pod is not None:
        kube = {
            "namespace": namespace,
            "pod": pod,
            "pod_uid": pod_uid,
            "container": container,
            "container_id": base.cgroup.container_id,
            "node": host,
            "qos_class": "Burstable",
            "labels": {},
            "annotations": {},
            "owner": {"kind": "ReplicaSet", "name": f"{workload[1]}-7d9f" if workload else "x"}
            if workload
            else None,
            "workload": {"kind": workload[0], "name": workload[1]} if workload else None,
            "image": "registry.example/app:1",
            "memory_request_bytes": None,
            "memory_limit_bytes": int(limit_mib * MIB) if limit_mib else None,
            "pod_memory_limit_bytes": None,
            "restart_count": 1,
            "static_pod": False,
            "deleted": False,
        }
        enrichment = {"status": "ok", "source": "api_watch"}
    event = dataclasses.replace(
        base,
        event_id=make_signal_id("fixture-kill", host, at, pid),
        time=format_time(at),
        time_source="kmsg_boottime",
        host=host,
        victim=victim,
        kubernetes=kube,
        enrichment=enrichment,
        analysis={
            "limit_fired": limit_fired,
            "limit_bytes": int(limit_mib * MIB) if limit_mib else None,
            "rss_bytes": int(rss_mib * MIB),
            "rss_fraction_of_limit": round(rss_mib / limit_mib, 4) if limit_mib else None,
        },
        incident_id=incident_id,
    )
    return event_to_dict(event)


def signal_event(
    *,
    kind: str,
    reason: str,
    at: float,
    host: str,
    namespace: str | None,
    pod: str | None,
    container: str | None,
    incident_id: str | None,
    pid: int | None = None,
    comm: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    event = K8sEvent(
        event_id=make_signal_id("fixture-signal", kind, host, at, pod),
        type=kind,
        time=format_time(at),
        host=host,
        reason=reason,
        message=message,
        namespace=namespace,
        pod=pod,
        pod_uid=None,
        container=container,
        container_id=None,
        pid=pid,
        comm=comm,
        occurrence=1,
        details={},
        origin={
            "kind": "Pod" if kind in ("k8s_oom_killed", "k8s_evicted") else "Event",
            "api_version": "v1",
            "uid": None,
            "name": pod,
            "namespace": namespace,
            "resource_version": "1",
            "component": "kernel-monitor" if kind == "k8s_oom_killing" else "kubelet",
        },
        source=Source(kind="k8s_watch", format=None, position=None),
        incident_id=incident_id,
    )
    return event_to_dict(event)


def summary_event(
    *,
    incident_id: str,
    at: float,
    host: str,
    signals: list[str],
    kills: int,
    namespace: str | None,
    pod: str | None,
    workload: tuple[str, str] | None,
    visible: bool | None,
    verdict: str,
    merged: list[str] | None = None,
) -> dict[str, Any]:
    event = IncidentEvent(
        event_id=make_signal_id("fixture-incident", incident_id),
        incident_id=incident_id,
        time=format_time(at),
        first_seen=format_time(at),
        last_seen=format_time(at + 5),
        host=host,
        signals=signals,
        signal_event_ids=[],
        kills=kills,
        victims=[],
        kubernetes={
            "namespace": namespace,
            "pod": pod,
            "pod_uid": None,
            "container": None,
            "container_id": None,
            "workload": {"kind": workload[0], "name": workload[1]} if workload else None,
        }
        if pod
        else None,
        verdict=verdict,
        visible_in_kubernetes=visible,
        workload_kills_in_window=1,
        window_seconds=30.0,
        merged_incident_ids=merged or [],
    )
    return event_to_dict(event)


WEB = ("Deployment", "web")
API = ("Deployment", "api")


def fixture_set() -> list[dict[str, Any]]:
    """The set described in the module docstring, in time order (callers shuffle it)."""
    events: list[dict[str, Any]] = []
    web = {"namespace": "payments", "workload": WEB, "container": "web"}
    events.append(
        kill_event(
            at=T0 + 60,
            host="node-a",
            pod="web-7d9f-aaaaa",
            limit_fired="container_limit",
            rss_mib=511,
            limit_mib=512,
            pid=4242,
            comm="java",
            incident_id="inc-a",
            **web,
        )
    )
    events.append(
        signal_event(
            kind="k8s_oom_killed",
            reason="OOMKilled",
            at=T0 + 62,
            host="node-a",
            namespace="payments",
            pod="web-7d9f-aaaaa",
            container="web",
            incident_id="inc-a",
        )
    )
    events.append(
        summary_event(
            incident_id="inc-a",
            at=T0 + 60,
            host="node-a",
            signals=["k8s_oom_killed", "oom_kill"],
            kills=1,
            namespace="payments",
            pod="web-7d9f-aaaaa",
            workload=WEB,
            visible=True,
            verdict="container_limit",
        )
    )
    events.append(
        kill_event(
            at=T0 + 300,
            host="node-a",
            pod="web-7d9f-bbbbb",
            limit_fired="container_limit",
            rss_mib=500,
            limit_mib=512,
            pid=4300,
            comm="java",
            incident_id="inc-b",
            **web,
        )
    )
    events.append(
        summary_event(
            incident_id="inc-b",
            at=T0 + 300,
            host="node-a",
            signals=["oom_kill"],
            kills=1,
            namespace="payments",
            pod="web-7d9f-bbbbb",
            workload=WEB,
            visible=False,
            verdict="container_limit",
        )
    )
    events.append(
        signal_event(
            kind="k8s_oom_killed",
            reason="OOMKilled",
            at=T0 + 599,
            host="node-a",
            namespace="payments",
            pod="web-7d9f-ccccc",
            container="web",
            incident_id="inc-c-early",
        )
    )
    events.append(
        kill_event(
            at=T0 + 600,
            host="node-a",
            pod="web-7d9f-ccccc",
            limit_fired="pod_limit",
            rss_mib=900,
            limit_mib=1024,
            pid=4400,
            comm="java",
            incident_id="inc-c",
            **web,
        )
    )
    events.append(
        kill_event(
            at=T0 + 600.002,
            host="node-a",
            pod="web-7d9f-ccccc",
            limit_fired="pod_limit",
            rss_mib=100,
            limit_mib=1024,
            pid=4401,
            comm="envoy",
            incident_id="inc-c",
            **web,
        )
    )
    events.append(
        summary_event(
            incident_id="inc-c",
            at=T0 + 599,
            host="node-a",
            signals=["k8s_oom_killed", "oom_kill"],
            kills=2,
            namespace="payments",
            pod="web-7d9f-ccccc",
            workload=WEB,
            visible=True,
            verdict="pod_limit",
            merged=["inc-c-early"],
        )
    )
    events.append(
        kill_event(
            at=T0 + 120,
            host="node-b",
            namespace="default",
            workload=API,
            pod="api-5c6d-xxxxx",
            container="api",
            limit_fired="pod_limit",
            rss_mib=250,
            limit_mib=256,
            pid=777,
            comm="python3",
            incident_id="inc-d",
        )
    )
    events.append(
        signal_event(
            kind="k8s_oom_killing",
            reason="OOMKilling",
            at=T0 + 121,
            host="node-b",
            namespace=None,
            pod=None,
            container=None,
            incident_id="inc-d",
            pid=777,
            comm="python3",
            message="Killed process 777 (python3)",
        )
    )
    events.append(
        kill_event(
            at=T0 + 900,
            host="node-b",
            namespace=None,
            workload=None,
            pod=None,
            container=None,
            limit_fired="node",
            rss_mib=3000,
            limit_mib=None,
            pid=999,
            comm="postgres",
            incident_id="inc-e",
        )
    )
    events.append(
        signal_event(
            kind="k8s_evicted",
            reason="Evicted",
            at=T0 + 450,
            host="node-c",
            namespace="batch",
            pod="report-29xkq",
            container=None,
            incident_id="inc-f",
            message="The node was low on resource: memory.",
        )
    )
    return events


FIXTURE_KILLS = 6
FIXTURE_INCIDENTS = 6
# Incident keys in kill-time order.
FIXTURE_ORDER = ["inc-a", "inc-d", "inc-b", "inc-f", "inc-c", "inc-e"]


def shuffled_with_duplicates(events: list[dict[str, Any]], seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    doubled = events + [dict(e) for e in rng.sample(events, k=len(events) // 2)]
    rng.shuffle(doubled)
    return doubled


def synthetic_events(count: int, *, start: float = T0, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` events for benchmarks and size checks: kills with a signal for about one in three."""
    rng = random.Random(seed)
    namespaces = [f"team-{i}" for i in range(12)]
    events: list[dict[str, Any]] = []
    i = 0
    while len(events) < count:
        ns = rng.choice(namespaces)
        workload = ("Deployment", f"svc-{rng.randrange(40)}")
        at = start + i * 3.7
        incident = f"bench-{i}"
        limit = rng.choice(["container_limit", "container_limit", "pod_limit", "node"])
        events.append(
            kill_event(
                at=at,
                host=f"node-{rng.randrange(20)}",
                namespace=ns,
                workload=workload,
                pod=f"{workload[1]}-{rng.randrange(999):03d}",
                container="app",
                limit_fired=limit,
                rss_mib=rng.uniform(50, 2000),
                limit_mib=2048,
                pid=1000 + i,
                comm="app",
                incident_id=incident,
            )
        )
        if len(events) < count and i % 3 == 0:
            events.append(
                signal_event(
                    kind="k8s_oom_killed",
                    reason="OOMKilled",
                    at=at + 1.5,
                    host="node-0",
                    namespace=ns,
                    pod=f"p-{i}",
                    container="app",
                    incident_id=incident,
                )
            )
        i += 1
    return events
