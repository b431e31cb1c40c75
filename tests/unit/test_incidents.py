"""Incident correlation: every signal of one kill gets one incident id, and one summary per incident."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import replace
from typing import Any

import pytest
from eventschema import validate_incident

from parsers.events import (
    EVENT_TYPE_K8S_EVICTED,
    EVENT_TYPE_K8S_MEMORY_PRESSURE,
    EVENT_TYPE_K8S_OOM_KILLED,
    EVENT_TYPE_K8S_OOM_KILLING,
    EVENT_TYPE_K8S_SYSTEM_OOM,
    Analysis,
    CgroupInfo,
    IncidentEvent,
    K8sEvent,
    OomEvent,
    PodMetadata,
    Source,
    Victim,
    event_to_dict,
    format_time,
    make_signal_id,
)
from streamer.enrich.incidents import Correlator

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CID = "a" * 64
CID2 = "b" * 64
POD_UID = "0d3f6c3e-8f1a-4a52-9c55-3f2a1b0c9d11"
STATIC_HASH = "5c1b4d7f2e9a4b6c8d0e1f2a3b4c5d6e"  # kubelet config hash: the static pod's cgroup UID
KUBE = {
    "namespace": "shop",
    "pod": "cart-7d9f8-abcde",
    "pod_uid": POD_UID,
    "container": "cart",
    "container_id": CID,
    "node": "node-1",
    "qos_class": "Burstable",
    "owner": {"kind": "ReplicaSet", "name": "cart-7d9f8"},
    "workload": {"kind": "Deployment", "name": "cart"},
}
# The enricher's fields these tests leave out, as the enricher fills them when it does not know them.
KUBE_UNKNOWN: dict[str, Any] = {
    **dict.fromkeys(("namespace", "pod", "pod_uid", "container", "container_id", "node", "qos_class")),
    **dict.fromkeys(("owner", "workload", "image", "memory_request_bytes", "memory_limit_bytes")),
    **dict.fromkeys(("pod_memory_limit_bytes", "restart_count")),
    "labels": {}, "annotations": {}, "static_pod": False, "deleted": False,
}  # fmt: skip
ANALYSIS_UNKNOWN: dict[str, Any] = dict.fromkeys(
    ("limit_fired", "limit_bytes", "rss_bytes", "rss_fraction_of_limit")
)


def kernel(
    name: str,
    t: float | None,
    *,
    pid: int = 4242,
    comm: str = "cart",
    host: str | None = "node-1.example.internal",
    container_id: str | None = CID,
    pod_uid: str | None = POD_UID,
    scope: str | None = "container",
    constraint: str | None = "CONSTRAINT_MEMCG",
    kubernetes: dict[str, Any] | None = None,
    analysis: dict[str, Any] | None = None,
    report: int | None = None,
    group_kill: bool = False,
    time_text: str | None = None,
) -> OomEvent:
    """A kernel oom_kill; ``report`` is the report's first-line position (kmsg seq), default per event."""
    seq = report if report is not None else zlib.crc32(name.encode())
    return OomEvent(
        event_id=make_signal_id("kernel", name),
        time=time_text if time_text is not None else format_time(t),
        time_source="kmsg_boottime",
        kernel_time=100.0,
        host=host,
        boot_id="boot-1",
        victim=Victim(pid=pid, comm=comm),
        trigger=None,
        constraint=constraint,
        cgroup=CgroupInfo(
            pod_uid=pod_uid,
            container_id=container_id,
            limit_scope=scope,
            source="report" if pod_uid or container_id else "none",
        ),
        memcg=None,
        tasks=None,
        tasks_total=None,
        group_kill=group_kill,
        partial=False,
        partial_reason=None,
        kill_message="Memory cgroup out of memory",
        reaped=None,
        memcg_stats=None,
        mem_info=None,
        source=Source(kind="kmsg", format="kmsg", position={"seq": seq + 5}, report_position={"seq": seq}),
        kubernetes=PodMetadata.from_dict(kubernetes) if isinstance(kubernetes, dict) else kubernetes,
        analysis=_analysis(analysis),
    )


def _analysis(values: dict[str, Any] | None) -> Analysis | None:
    """The typed analysis from the fields a test cares about (the others None)."""
    if values is None:
        return None
    return Analysis(**{"limit_bytes": None, "rss_bytes": None, "rss_fraction_of_limit": None, **values})


def k8s(
    kind: str,
    name: str,
    t: float | None,
    *,
    host: str | None = "node-1",
    namespace: str | None = "shop",
    pod: str | None = "cart-7d9f8-abcde",
    pod_uid: str | None = POD_UID,
    container: str | None = "cart",
    container_id: str | None = CID,
    pid: int | None = None,
    comm: str | None = None,
    time_text: str | None = None,
) -> K8sEvent:
    reasons = {
        EVENT_TYPE_K8S_OOM_KILLED: "OOMKilled",
        EVENT_TYPE_K8S_OOM_KILLING: "OOMKilling",
        EVENT_TYPE_K8S_SYSTEM_OOM: "SystemOOM",
        EVENT_TYPE_K8S_EVICTED: "Evicted",
        EVENT_TYPE_K8S_MEMORY_PRESSURE: "EvictionThresholdMet",
    }
    return K8sEvent(
        event_id=make_signal_id(kind, name),
        type=kind,
        time=time_text if time_text is not None else format_time(t),
        host=host,
        reason=reasons[kind],
        message=None,
        namespace=namespace,
        pod=pod,
        pod_uid=pod_uid,
        container=container,
        container_id=container_id,
        pid=pid,
        comm=comm,
        occurrence=1,
        details={},
        origin={
            "kind": "Pod", "api_version": "v1", "uid": pod_uid, "name": pod, "namespace": namespace,
            "resource_version": None, "component": "kubelet",
        },
        source=Source(kind="k8s_watch", format="k8s_api", position=None),
    )  # fmt: skip


def pod_status(name: str, t: float | None, **kwargs: Any) -> K8sEvent:
    return k8s(EVENT_TYPE_K8S_OOM_KILLED, name, t, **kwargs)


def node_event(
    kind: str, name: str, t: float, *, host: str, pid: int, comm: str = "cart", namespace: str | None = None
) -> K8sEvent:
    """NPD OOMKilling / kubelet SystemOOM: a Node event naming a pid, no pod."""
    return k8s(
        kind, name, t, host=host, namespace=namespace, pod=None, pod_uid=None, container=None,
        container_id=None, pid=pid, comm=comm,
    )  # fmt: skip


def observe(correlator: Correlator, event: OomEvent | K8sEvent, now: float) -> str:
    result = correlator.observe(event, now)
    assert isinstance(result, type(event))
    assert result.event_id == event.event_id
    assert result.incident_id is not None
    return result.incident_id


def close_all(correlator: Correlator, now: float) -> list[IncidentEvent]:
    closed = correlator.tick(now)
    for incident in closed:
        validate_incident(event_to_dict(incident))
    assert correlator.counts["errors"] == 0
    return closed


def only(incidents: list[IncidentEvent]) -> IncidentEvent:
    assert len(incidents) == 1, incidents
    return incidents[0]


# -- one kill, several signals -----------------------------------------------------------------------


def test_kernel_then_pod_status() -> None:
    c = Correlator()
    kill = kernel("k1", T0, kubernetes=KUBE, analysis={"limit_fired": "container_limit"})
    status = pod_status("p1", T0 + 0.4)
    first = observe(c, kill, T0 + 2.5)
    assert first == make_signal_id("incident", kill.event_id)
    assert observe(c, status, T0 + 3.0) == first
    assert c.open_incidents == 1

    assert c.tick(T0 + 3.0 + 119.9) == []  # the window runs from the last signal
    summary = only(close_all(c, T0 + 3.0 + 120.0))
    assert c.open_incidents == 0
    assert summary.incident_id == first
    assert summary.event_id == make_signal_id("incident-summary", first)
    assert summary.signals == ["k8s_oom_killed", "oom_kill"]
    assert summary.signal_event_ids == [kill.event_id, status.event_id]
    assert summary.first_seen == summary.time == format_time(T0) == "2027-01-15T08:00:00.000000Z"
    assert summary.last_seen == format_time(T0 + 0.4)
    assert summary.host == "node-1.example.internal"
    assert summary.kills == 1
    assert summary.victims == [{"pid": 4242, "comm": "cart"}]
    assert summary.kubernetes is not None and dataclasses.asdict(summary.kubernetes) == {
        "namespace": "shop",
        "pod": "cart-7d9f8-abcde",
        "pod_uid": POD_UID,
        "container": "cart",
        "container_id": CID,
        "workload": {"kind": "Deployment", "name": "cart"},
    }
    assert summary.verdict == "container_limit"
    assert summary.visible_in_kubernetes is True
    assert summary.workload_kills_in_window == 1
    assert summary.window_seconds == 120.0


def test_pod_status_then_kernel() -> None:
    """The kernel report is held ~2.5 s, so the pod status often comes first; its id names the incident."""
    c = Correlator()
    status = pod_status("p1", T0 + 0.3)
    kill = kernel("k1", T0, scope="pod")  # not enriched: matched on the cgroup's container id
    first = observe(c, status, T0 + 1.0)
    assert first == make_signal_id("incident", status.event_id)
    assert observe(c, kill, T0 + 2.5) == first
    summary = only(close_all(c, T0 + 200))
    assert summary.signal_event_ids == [status.event_id, kill.event_id]
    assert summary.first_seen == format_time(T0)  # signal times, not arrival order
    assert summary.kills == 1
    assert summary.verdict == "pod_limit"  # from the kernel's cgroup.limit_scope
    assert summary.visible_in_kubernetes is True
    # Nothing enriched the kernel event: the pod status fields fill the summary.
    assert summary.kubernetes is not None
    assert summary.kubernetes.pod == "cart-7d9f8-abcde"
    assert summary.kubernetes.container == "cart"


def test_container_id_with_runtime_prefix_matches_bare_id() -> None:
    c = Correlator()
    a = observe(c, kernel("k1", T0, pod_uid=None), T0 + 2.5)
    b = observe(c, pod_status("p1", T0, pod_uid=None, container_id="containerd://" + CID.upper()), T0 + 3)
    assert a == b


def test_npd_matches_by_host_and_pid_short_vs_fqdn() -> None:
    c = Correlator()
    npd = node_event(EVENT_TYPE_K8S_OOM_KILLING, "n1", T0 + 0.5, host="Node-1", pid=4242)
    kill = kernel("k1", T0, host="node-1.example.internal", container_id=None, pod_uid=None, scope=None)
    other_pid = node_event(EVENT_TYPE_K8S_OOM_KILLING, "n2", T0 + 0.5, host="node-1", pid=4243)
    other_host = node_event(EVENT_TYPE_K8S_OOM_KILLING, "n3", T0 + 0.5, host="node-2.example", pid=4242)
    incident = observe(c, kill, T0 + 2.5)
    assert observe(c, npd, T0 + 3) == incident
    assert observe(c, other_pid, T0 + 3) != incident
    assert observe(c, other_host, T0 + 3) != incident
    assert c.open_incidents == 3
    summaries = {s.incident_id: s for s in close_all(c, T0 + 200)}
    summary = summaries[incident]
    assert summary.signals == ["k8s_oom_killing", "oom_kill"]
    assert summary.kills == 1
    assert summary.visible_in_kubernetes is None  # no cgroup identity: not known to be Kubernetes
    alone = [s for s in summaries.values() if s.incident_id != incident]
    assert [s.verdict for s in alone] == ["reported_by_kubernetes_only"] * 2
    assert [s.kills for s in alone] == [0, 0]


def test_system_oom_joins_global_kill() -> None:
    c = Correlator()
    kill = kernel(
        "k1", T0, pid=777, comm="java", host="node-1", container_id=None, pod_uid=None,
        scope="global", constraint="CONSTRAINT_NONE",
    )  # fmt: skip
    # A namespace on a Node event would be the Event object's own, never a pod's: not attribution.
    system = node_event(
        EVENT_TYPE_K8S_SYSTEM_OOM, "s1", T0 + 1, host="node-1.cluster.local", pid=777, namespace="default"
    )
    assert observe(c, system, T0 + 1.5) == observe(c, kill, T0 + 2.5)
    summary = only(close_all(c, T0 + 200))
    assert summary.signals == ["k8s_system_oom", "oom_kill"]
    assert summary.verdict == "node_oom"
    assert summary.visible_in_kubernetes is None  # a system process, outside any pod
    assert summary.kubernetes is None
    assert summary.host == "node-1"


def test_global_kill_of_a_pod_process_is_node_oom_and_invisible() -> None:
    c = Correlator()
    kill = kernel("k1", T0, scope=None, constraint="CONSTRAINT_NONE")
    observe(c, kill, T0)
    summary = only(close_all(c, T0 + 200))
    assert summary.verdict == "node_oom"  # from the constraint when nothing else says
    assert summary.visible_in_kubernetes is False


def test_static_pod_config_hash_and_api_uid() -> None:
    """The kernel's cgroup names the config hash, Kubernetes the mirror pod's API UID: either matches."""
    api_uid = "7a1e5b8c-1d2e-4f30-8a9b-0c1d2e3f4a5b"
    enriched = dict(KUBE, pod="etcd-node-1", pod_uid=api_uid, container="etcd", workload=None)
    enriched["owner"] = {"kind": "Node", "name": "node-1"}
    c = Correlator()
    kill = kernel("k1", T0, container_id=None, pod_uid=STATIC_HASH, scope="pod", kubernetes=enriched)
    status = pod_status(
        "p1", T0 + 0.2, pod="etcd-node-1", pod_uid=api_uid, container="etcd", container_id=None
    )
    assert observe(c, kill, T0 + 2.5) == observe(c, status, T0 + 3)
    # A signal naming only the config hash (e.g. another kernel-derived source) matches too.
    hashed = k8s(EVENT_TYPE_K8S_EVICTED, "e1", T0 + 1, pod_uid=STATIC_HASH, container_id=None)
    assert observe(c, hashed, T0 + 4) == make_signal_id("incident", kill.event_id)
    summary = only(close_all(c, T0 + 200))
    assert summary.kubernetes is not None
    assert summary.kubernetes.pod_uid == api_uid  # the API UID, not the hash
    assert summary.kubernetes.workload is None
    assert summary.visible_in_kubernetes is True
    assert summary.verdict == "pod_limit"


def test_static_pod_unenriched_hash_does_not_become_a_different_uid() -> None:
    c = Correlator()
    observe(c, kernel("k1", T0, container_id=None, pod_uid=STATIC_HASH), T0)
    observe(c, pod_status("p1", T0, pod_uid="7a1e5b8c-1d2e-4f30-8a9b-0c1d2e3f4a5b", container_id=None), T0)
    # Nothing ties the hash to the API UID here: two incidents, not one.
    assert c.open_incidents == 2


# -- repeated kills, group kills ---------------------------------------------------------------------


def test_two_kills_of_one_container_ten_seconds_apart() -> None:
    c = Correlator()
    k1 = kernel("k1", T0, kubernetes=KUBE)
    k2 = kernel("k2", T0 + 10, kubernetes=KUBE, pid=4300)
    i1 = observe(c, k1, T0 + 2.5)
    i2 = observe(c, k2, T0 + 12.5)
    assert i1 != i2
    # Pod statuses join the kernel kill nearest in time, whatever the arrival order.
    assert observe(c, pod_status("p2", T0 + 10.1), T0 + 13) == i2
    assert observe(c, pod_status("p1", T0 + 0.1), T0 + 14) == i1
    summaries = close_all(c, T0 + 14 + 120)
    assert [s.incident_id for s in summaries] == [i1, i2]
    assert [s.kills for s in summaries] == [1, 1]
    assert [s.victims for s in summaries] == [
        [{"pid": 4242, "comm": "cart"}],
        [{"pid": 4300, "comm": "cart"}],
    ]
    assert [s.workload_kills_in_window for s in summaries] == [1, 2]
    assert all(s.visible_in_kubernetes for s in summaries)


def test_pod_statuses_before_their_kernel_kills_pair_up() -> None:
    c = Correlator()
    p1 = observe(c, pod_status("p1", T0), T0 + 1)
    p2 = observe(c, pod_status("p2", T0 + 10), T0 + 11)
    assert p1 != p2  # one pod status per kill: the next restart's status is another kill
    assert observe(c, kernel("k1", T0), T0 + 2.5) == p1
    assert observe(c, kernel("k2", T0 + 10, pid=4300), T0 + 12.5) == p2
    summaries = close_all(c, T0 + 200)
    assert [s.kills for s in summaries] == [1, 1]
    assert [s.signals for s in summaries] == [["k8s_oom_killed", "oom_kill"]] * 2


def test_workload_kills_count_other_pods_of_the_workload_and_forget_old_ones() -> None:
    c = Correlator(workload_window_seconds=900)
    other_pod = dict(KUBE, pod="cart-7d9f8-zzzzz", pod_uid="11111111-2222-3333-4444-555555555555",
                     container_id=CID2)  # fmt: skip
    observe(c, kernel("k1", T0, kubernetes=KUBE), T0)
    observe(c, kernel("k2", T0 + 300, kubernetes=other_pod, container_id=CID2, pod_uid=None), T0 + 300)
    observe(c, kernel("k3", T0 + 1000, kubernetes=KUBE), T0 + 1000)  # k1 is 1000 s before: out
    outside = dict(KUBE, namespace="other")
    observe(c, kernel("k4", T0 + 1001, kubernetes=outside, container_id=CID2, pod_uid=None), T0 + 1001)
    counts = [s.workload_kills_in_window for s in close_all(c, T0 + 2000)]
    assert counts == [1, 2, 2, 1]
    assert c._history_by_key  # remembered for later incidents...
    assert c.tick(T0 + 2000 + 900 + 2 * 120 + 1) == []
    assert not c._history and not c._history_by_key  # ...and forgotten once no incident can need them


def test_workload_kills_look_back_only() -> None:
    """A later kill that closed first does not count for an earlier one kept open by a late signal."""
    c = Correlator()
    early = observe(c, kernel("k1", T0, kubernetes=KUBE), T0 + 2.5)
    later = observe(c, kernel("k2", T0 + 10, kubernetes=KUBE, pid=4300), T0 + 12.5)
    assert [s.incident_id for s in close_all(c, T0 + 12.5 + 100)] == []
    assert observe(c, pod_status("p1", T0 + 0.1), T0 + 100) == early  # keeps the first one open
    (second,) = close_all(c, T0 + 12.5 + 120)
    assert second.incident_id == later
    assert second.workload_kills_in_window == 2
    (first,) = close_all(c, T0 + 100 + 120)
    assert first.incident_id == early
    assert first.workload_kills_in_window == 1


def test_workload_falls_back_to_namespace_and_pod() -> None:
    c = Correlator()
    bare = dict(KUBE, workload=None)
    observe(c, kernel("k1", T0, kubernetes=bare), T0)
    observe(c, kernel("k2", T0 + 10, kubernetes=bare), T0 + 10)
    observe(c, kernel("k3", T0 + 20, kubernetes=dict(bare, pod="another"), container_id=CID2), T0 + 20)
    assert [s.workload_kills_in_window for s in close_all(c, T0 + 200)] == [1, 2, 1]


def test_group_kill_is_one_incident() -> None:
    c = Correlator()
    a = kernel("g1", T0, pid=100, comm="worker", report=500, group_kill=True)
    b = kernel("g2", T0 + 0.001, pid=101, comm="worker", report=500, group_kill=True)
    later = kernel("g3", T0 + 5, pid=102, comm="worker", report=900, group_kill=True)  # the next report
    incident = observe(c, a, T0 + 2.5)
    assert observe(c, b, T0 + 2.5) == incident
    assert observe(c, later, T0 + 7.5) != incident
    summaries = close_all(c, T0 + 200)
    assert summaries[0].incident_id == incident
    assert summaries[0].kills == 2
    assert summaries[0].victims == [{"pid": 100, "comm": "worker"}, {"pid": 101, "comm": "worker"}]
    assert summaries[0].visible_in_kubernetes is False
    assert summaries[1].kills == 1


def test_same_report_position_on_another_host_is_another_report() -> None:
    c = Correlator()
    a = observe(c, kernel("g1", T0, report=500, container_id=None, pod_uid=None, host="node-1"), T0)
    b = observe(c, kernel("g2", T0, report=500, container_id=None, pod_uid=None, host="node-2"), T0)
    assert a != b


# -- visibility and verdicts -------------------------------------------------------------------------


def test_kernel_kill_alone_is_invisible_to_kubernetes() -> None:
    c = Correlator()
    observe(c, kernel("k1", T0, kubernetes=KUBE, analysis={"limit_fired": "pod_limit"}), T0 + 2.5)
    summary = only(close_all(c, T0 + 200))
    assert summary.visible_in_kubernetes is False
    assert summary.verdict == "pod_limit"  # analysis wins over cgroup.limit_scope "container"
    assert summary.signals == ["oom_kill"]


def test_kernel_kill_outside_kubernetes_has_no_visibility() -> None:
    c = Correlator()
    observe(c, kernel("k1", T0, container_id=None, pod_uid=None, scope="other"), T0)
    summary = only(close_all(c, T0 + 200))
    assert summary.visible_in_kubernetes is None
    assert summary.kubernetes is None
    assert summary.verdict == "unknown"
    assert summary.workload_kills_in_window == 1


@pytest.mark.parametrize(
    ("analysis", "scope", "constraint", "verdict"),
    [
        ({"limit_fired": "node_allocatable"}, "container", "CONSTRAINT_MEMCG", "node_allocatable"),
        ({"limit_fired": "node"}, None, None, "node_oom"),
        ({"limit_fired": "unknown"}, "kubepods", "CONSTRAINT_MEMCG", "node_allocatable"),
        ({"limit_fired": "cgroup_limit"}, "qos", "CONSTRAINT_MEMCG", "unknown"),
        (None, "global", None, "node_oom"),
        (None, None, "CONSTRAINT_MEMCG", "unknown"),
    ],
)
def test_verdict_from_the_kernel_kill(
    analysis: dict[str, Any] | None, scope: str | None, constraint: str | None, verdict: str
) -> None:
    c = Correlator()
    observe(c, kernel("k1", T0, analysis=analysis, scope=scope, constraint=constraint), T0)
    assert only(close_all(c, T0 + 200)).verdict == verdict


def test_kubernetes_only_signals() -> None:
    c = Correlator()
    observe(c, pod_status("p1", T0), T0)
    observe(c, k8s(EVENT_TYPE_K8S_EVICTED, "e1", T0, pod_uid="99999999-2222-3333-4444-555555555555",
                   container_id=None, pod="other"), T0)  # fmt: skip
    killed, evicted = close_all(c, T0 + 200)
    assert killed.verdict == "reported_by_kubernetes_only"
    assert killed.kills == 0 and killed.victims == []
    assert killed.visible_in_kubernetes is True
    assert killed.workload_kills_in_window == 1  # Kubernetes reported a kill of the workload
    assert killed.host == "node-1"
    assert evicted.verdict == "evicted"
    assert evicted.visible_in_kubernetes is True
    assert evicted.workload_kills_in_window == 0  # an eviction alone is not a kill


def test_signals_beyond_the_window_are_separate_incidents() -> None:
    c = Correlator(window_seconds=60)
    a = observe(c, kernel("k1", T0), T0 + 2.5)
    # Still open (no tick), but its signal time is 61 s away from the kill: another incident.
    b = observe(c, pod_status("p1", T0 + 61), T0 + 62)
    c_ = observe(c, pod_status("p2", T0 + 59), T0 + 62)
    assert a != b
    assert c_ == a
    assert c.open_incidents == 2
    summaries = close_all(c, T0 + 62 + 60)
    assert sorted(s.kills for s in summaries) == [0, 1]
    assert all(s.window_seconds == 60 for s in summaries)


def test_a_closed_incident_takes_no_more_signals() -> None:
    c = Correlator(window_seconds=30)
    a = observe(c, kernel("k1", T0), T0)
    assert len(close_all(c, T0 + 30)) == 1
    assert observe(c, pod_status("p1", T0 + 1), T0 + 31) != a


def test_different_containers_of_one_pod_stay_apart() -> None:
    c = Correlator()
    a = observe(c, kernel("k1", T0), T0 + 2.5)
    b = observe(c, pod_status("p1", T0, container="sidecar", container_id=CID2), T0 + 3)
    assert a != b  # same pod UID, but the signals name different containers


def test_pod_status_and_npd_before_the_kernel_kill_are_merged() -> None:
    c = Correlator()
    status = pod_status("p1", T0 + 0.2)
    npd = node_event(EVENT_TYPE_K8S_OOM_KILLING, "n1", T0 + 0.1, host="node-1", pid=4242)
    first = observe(c, status, T0 + 1)
    second = observe(c, npd, T0 + 1.5)
    assert first != second  # nothing links them yet
    assert observe(c, kernel("k1", T0), T0 + 2.5) == first  # the kill links both
    assert c.open_incidents == 1
    assert c.counts["merged"] == 1
    summary = only(close_all(c, T0 + 200))
    assert summary.incident_id == first
    assert summary.signals == ["k8s_oom_killed", "k8s_oom_killing", "oom_kill"]
    assert set(summary.signal_event_ids) == {status.event_id, npd.event_id, kernel("k1", T0).event_id}
    assert summary.merged_incident_ids == [second]  # NPD's event was published under this id


def test_duplicate_event_joins_once() -> None:
    c = Correlator()
    kill = kernel("k1", T0)
    a = observe(c, kill, T0)
    assert observe(c, kill, T0 + 100) == a
    assert c.counts["duplicates"] == 1
    assert c.tick(T0 + 150) == []  # the duplicate kept it open
    summary = only(close_all(c, T0 + 220))
    assert summary.kills == 1
    assert summary.signal_event_ids == [kill.event_id]


# -- bounds, flush, pass-through, odd input ----------------------------------------------------------


def test_max_open_closes_the_oldest_early() -> None:
    c = Correlator(max_open=2)
    ids = [
        observe(c, kernel(f"k{n}", T0 + n, container_id=None, pod_uid=None, pid=n), T0 + n) for n in range(3)
    ]
    assert c.open_incidents == 2
    assert c.counts["closed_early"] == 1
    early = close_all(c, T0 + 3)  # nothing expired yet: only the one closed early
    assert [s.incident_id for s in early] == [ids[0]]
    assert c.open_incidents == 2
    assert [s.incident_id for s in c.flush()] == ids[1:]


def test_early_closed_summaries_are_bounded_too() -> None:
    c = Correlator(max_open=2)
    for n in range(7):
        observe(c, kernel(f"k{n}", T0 + n, container_id=None, pod_uid=None, pid=n), T0 + n)
    assert c.counts["closed_early"] == 5
    assert c.counts["summaries_dropped"] == 3  # no tick in between: only max_open of them are kept
    assert [s.victims[0]["pid"] for s in c.tick(T0 + 7)] == [3, 4]


def test_flush_closes_everything() -> None:
    c = Correlator()
    observe(c, kernel("k1", T0), T0)
    observe(c, pod_status("p1", T0 + 1), T0 + 1)
    observe(c, kernel("k2", T0 + 5, container_id=None, pod_uid=None, pid=9), T0 + 5)
    summaries = c.flush()
    assert len(summaries) == 2
    assert c.open_incidents == 0
    assert c.flush() == []
    assert c.tick(T0 + 10_000) == []
    for summary in summaries:
        validate_incident(event_to_dict(summary))


def test_incident_and_memory_pressure_pass_through() -> None:
    c = Correlator()
    observe(c, kernel("k1", T0), T0)
    (summary,) = c.flush()
    assert c.observe(summary, T0) is summary
    pressure = k8s(EVENT_TYPE_K8S_MEMORY_PRESSURE, "m1", T0, container_id=None, pod=None, pod_uid=None)
    assert c.observe(pressure, T0) is pressure
    assert c.open_incidents == 0


@pytest.mark.schema_exempt("the correlator is fed events of wrong shapes on purpose")
def test_odd_events_never_raise() -> None:
    c = Correlator()
    no_time = kernel("k1", None, container_id=None, pod_uid=None, host=None)
    bad_time = pod_status("p1", None, time_text="yesterday-ish", host=None, pod_uid=None)
    weird = replace(
        kernel("k2", T0, report=None),
        victim=None,
        kubernetes="not a dict",  # type: ignore[arg-type]
        analysis=["nor", "this"],  # type: ignore[arg-type]
        cgroup=None,  # type: ignore[arg-type]
        source=None,  # type: ignore[arg-type]
    )
    empty = k8s(EVENT_TYPE_K8S_OOM_KILLING, "n1", None, host=None, namespace=None, pod=None, pod_uid=None,
                container=None, container_id=None)  # fmt: skip
    odd_pid = replace(node_event(EVENT_TYPE_K8S_OOM_KILLING, "n2", T0, host="", pid=1), pid="12")  # type: ignore[arg-type]
    ids = [observe(c, event, T0 + 5) for event in (no_time, bad_time, weird, empty, odd_pid)]
    assert len(set(ids)) >= 4
    # The unparsable time falls back to `now` and still matches a kill by container id.
    assert observe(c, kernel("k3", None, time_text="garbage", pod_uid=None), T0 + 6) == ids[1]
    assert c.counts["time_unparsable"] == 2
    assert c.counts["errors"] == 0
    summaries = close_all(c, T0 + 500)
    assert {s.first_seen for s in summaries} <= {format_time(T0 + 5), format_time(T0)}
    weird_summary = next(s for s in summaries if s.signal_event_ids == [weird.event_id])
    assert weird_summary.victims == [{"pid": None, "comm": None}]
    assert weird_summary.kubernetes is None
    assert weird_summary.verdict == "unknown"
