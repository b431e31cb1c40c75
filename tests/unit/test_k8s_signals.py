"""parsers/k8s.py: Kubernetes Pods and Event objects -> K8sEvent, once per real signal."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from eventschema import INCIDENT_SCHEMA, K8S_EVENT_SCHEMA, validate_incident, validate_k8s_event
from hypothesis import given, settings
from hypothesis import strategies as st
from k8sfake.objects import ContainerSpec, make_event, make_events_k8s_io_event, make_pod, terminated

from parsers.events import (
    IncidentEvent,
    IncidentKubernetes,
    K8sEvent,
    ObjectRef,
    Source,
    any_event_from_dict,
    event_to_json,
    make_signal_id,
)
from parsers.k8s import (
    SignalTracker,
    normalize_time,
    parse_container_id,
    parse_oom_killing_message,
    parse_system_oom_message,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "k8s"
SOURCE = Source(kind="k8s_watch", format="k8s_json", position=None)
CID_A = "a" * 64
CID_B = "b" * 64
CID_C = "c" * 64


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DATA / name).read_text())
    return result


def checked(events: list[K8sEvent]) -> list[K8sEvent]:
    """Every event validates against the schema and survives a JSON round trip."""
    for event in events:
        data = orjson.loads(orjson.dumps(event))
        validate_k8s_event(data)
        assert any_event_from_dict(data) == event
    return events


def run(tracker: SignalTracker, obj: Any, **kwargs: Any) -> list[K8sEvent]:
    return checked(tracker.from_object(obj, source=SOURCE, **kwargs))


def oom_pod(**kwargs: Any) -> dict[str, Any]:
    """A pod whose container 'app' restarted after an OOM kill (killed CID_A, now CID_B)."""
    spec = ContainerSpec(
        name="app",
        container_id=CID_B,
        restart_count=1,
        last_state=terminated("OOMKilled", container_id=CID_A),
    )
    return make_pod(name="web-1", uid="11111111-2222-4333-8444-555555555555", containers=[spec], **kwargs)


# --------------------------------------------------------------------------- small parsers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("containerd://" + CID_A, ("containerd", CID_A)),
        ("cri-o://" + CID_B, ("cri-o", CID_B)),
        ("docker://" + CID_C, ("docker", CID_C)),
        (CID_A, (None, CID_A)),
        ("containerd://", ("containerd", None)),
        ("", (None, None)),
        (None, (None, None)),
        (42, (None, None)),
    ],
)
def test_parse_container_id(value: Any, expected: tuple[str | None, str | None]) -> None:
    assert parse_container_id(value) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (  # NPD before kernel 5.1: two lines
            "Kill process 23508 (stress) score 1961 or sacrifice child\n"
            "Killed process 23508 (stress) total-vm:1031884kB, anon-rss:1002412kB, file-rss:4kB, shmem-rss:0kB",
            (23508, "stress"),
        ),
        (
            "Memory cgroup out of memory: Killed process 4162 (python3) total-vm:1102100kB, anon-rss:1046836kB, "
            "file-rss:4460kB, shmem-rss:0kB, UID:0 pgtables:2108kB oom_score_adj:983",
            (4162, "python3"),
        ),
        (
            "Out of memory: Killed process 77 (Plex Media Server) total-vm:10kB, anon-rss:1kB, file-rss:0kB",
            (77, "Plex Media Server"),
        ),
        ("Killed process 9 ((sd-pam)) total-vm:1kB, anon-rss:1kB, file-rss:0kB", (9, "(sd-pam)")),
        ("Kill process 5 (a b) score 1 or sacrifice child", (5, "a b")),
        ("something else entirely", (None, None)),
        ("", (None, None)),
    ],
)
def test_parse_oom_killing_message(message: str, expected: tuple[int | None, str | None]) -> None:
    assert parse_oom_killing_message(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("System OOM encountered, victim process: java, pid: 2817", (2817, "java")),
        ("System OOM encountered, victim process: a, b, pid: 3", (3, "a, b")),
        ("System OOM encountered", (None, None)),  # the kubelet got no process from cAdvisor
        ("victim process: x", (None, None)),
    ],
)
def test_parse_system_oom_message(message: str, expected: tuple[int | None, str | None]) -> None:
    assert parse_system_oom_message(message) == expected


def test_parsers_take_garbage() -> None:
    assert parse_oom_killing_message(None) == (None, None)  # type: ignore[arg-type]
    assert parse_system_oom_message(b"x") == (None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T10:05:00Z", "2026-11-27T10:05:00.000000Z"),
        ("2026-11-27T10:05:00.123456Z", "2026-11-27T10:05:00.123456Z"),
        ("2026-11-27T10:05:00.123456789Z", "2026-11-27T10:05:00.123456Z"),
        ("2026-11-27T12:05:00+02:00", "2026-11-27T10:05:00.000000Z"),
        ("2026-02-30T00:00:00Z", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1764237900, None),
    ],
)
def test_normalize_time(value: Any, expected: str | None) -> None:
    assert normalize_time(value) == expected


# --------------------------------------------------------------------------- fixtures


def test_fixture_npd_two_line_kernel_message() -> None:
    tracker = SignalTracker()
    [event] = run(tracker, load("npd-oomkilling-4x.json"))
    assert event.type == "k8s_oom_killing"
    assert (event.pid, event.comm) == (23508, "stress")
    assert event.host == "node-a"
    assert event.reason == "OOMKilling"
    assert event.message is not None and "\n" in event.message
    assert event.time == "2026-11-27T10:05:02.000000Z"
    assert event.occurrence == 1
    assert event.origin["component"] == "kernel-monitor"
    assert event.origin["uid"] == "0b6f3c1e-7a52-4c59-9b0e-2f1d8a6c4e01"
    assert event.event_id == make_signal_id("k8s_oom_killing", "0b6f3c1e-7a52-4c59-9b0e-2f1d8a6c4e01", 1)
    assert event.pod is None and event.namespace is None


def test_fixture_npd_5x_line() -> None:
    [event] = run(SignalTracker(), load("npd-oomkilling-5x.json"))
    assert (event.type, event.pid, event.comm, event.host) == ("k8s_oom_killing", 4162, "python3", "node-b")


def test_fixture_kubelet_system_oom_count_two() -> None:
    events = run(SignalTracker(), load("kubelet-systemoom.json"))
    assert [e.occurrence for e in events] == [1, 2]
    assert all(e.type == "k8s_system_oom" and (e.pid, e.comm) == (2817, "java") for e in events)
    assert all(e.host == "node-a" and e.origin["component"] == "kubelet" for e in events)
    # occurrence 1 is the first timestamp, the last one the last timestamp: both exact
    assert events[0].time == "2026-11-27T10:07:44.000000Z"
    assert events[1].time == "2026-11-27T10:09:12.000000Z"
    assert [e.details["time_exact"] for e in events] == [True, True]


def test_fixture_evicted_event_and_pod() -> None:
    tracker = SignalTracker()
    [from_event] = run(tracker, load("kubelet-evicted-event.json"))
    assert from_event.type == "k8s_evicted"
    assert (from_event.namespace, from_event.pod) == ("shop", "cache-7c9d8f6b5d-x2k4q")
    assert from_event.pod_uid == "3f9a1c2e-8b7d-4e6f-a5b4-c3d2e1f0a9b8"
    assert from_event.container == "cache"
    assert from_event.host == "node-c"
    assert from_event.details["starved_resource"] == "memory"
    assert from_event.details["offending_containers"] == [
        {"container": "cache", "usage": "1532576Ki", "request": "256Mi"}
    ]
    assert from_event.details["threshold_quantity"] == "100Mi"
    assert from_event.details["available"] == "87164Ki"

    [from_pod] = run(tracker, load("evicted-pod.json"))
    assert from_pod.type == "k8s_evicted"
    assert from_pod.pod_uid == from_event.pod_uid
    assert from_pod.host == "node-c"
    assert from_pod.container == "cache"
    assert from_pod.container_id == "6c1f0e2d3b4a59687786950a4b3c2d1e0f9e8d7c6b5a49382716051423f4e5d6"
    assert from_pod.time == "2026-11-27T12:00:31.000000Z"  # the DisruptionTarget condition
    assert from_pod.details["offending_containers"] == from_event.details["offending_containers"]
    assert from_pod.event_id == make_signal_id("k8s_evicted", from_pod.pod_uid)


def test_fixture_events_k8s_io_series() -> None:
    events = run(SignalTracker(), load("events-k8s-io-systemoom-series.json"))
    assert [e.occurrence for e in events] == [1, 2, 3]
    assert all((e.pid, e.comm, e.host) == (90211, "postgres", "node-d") for e in events)
    assert events[0].time == "2026-11-27T13:20:05.482913Z"  # eventTime: the first observation
    assert events[-1].time == "2026-11-27T13:26:41.007125Z"  # series.lastObservedTime
    assert events[1].time == events[-1].time and events[1].details["time_exact"] is False
    assert events[-1].origin["api_version"] == "events.k8s.io/v1"
    assert events[-1].origin["component"] == "kubelet"


def test_fixture_watch_wrapper_pod() -> None:
    [event] = run(SignalTracker(), load("watch-modified-pod-oomkilled.json"))
    assert event.type == "k8s_oom_killed"
    assert event.container_id == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert event.details["restart_count"] == 1


def test_every_fixture_gives_a_signal() -> None:
    names = sorted(p.name for p in DATA.glob("*.json"))
    assert len(names) >= 7
    for name in names:
        assert run(SignalTracker(), load(name)), name


# --------------------------------------------------------------------------- pod status


def test_pod_oomkilled_last_state_fields() -> None:
    tracker = SignalTracker()
    pod = oom_pod()
    [event] = run(tracker, pod)
    assert event.type == "k8s_oom_killed"
    assert event.reason == "OOMKilled"
    assert (event.namespace, event.pod, event.container) == ("default", "web-1", "app")
    assert event.pod_uid == "11111111-2222-4333-8444-555555555555"
    assert event.container_id == CID_A  # the killed container, not the running CID_B
    assert event.host == "node-a"
    assert event.time == "2026-11-27T10:05:00.000000Z"
    assert event.details == {
        "exit_code": 137,
        "started_at": "2026-11-27T10:00:00.000000Z",
        "finished_at": "2026-11-27T10:05:00.000000Z",
        "restart_count": 1,
        "container_kind": "regular",
        "runtime": "containerd",
        "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
        "state": "lastState",
    }
    assert event.origin["kind"] == "Pod" and event.origin["resource_version"] == "1"
    assert event.event_id == make_signal_id(
        "k8s_oom_killed",
        event.pod_uid,
        "app",
        CID_A,
        "2026-11-27T10:00:00.000000Z",
        "2026-11-27T10:05:00.000000Z",
    )


def test_pod_oomkilled_current_state_uses_status_container_id() -> None:
    spec = ContainerSpec(name="app", container_id=CID_C, state=terminated("OOMKilled"))
    pod = make_pod(name="job-1", containers=[spec])
    [event] = run(SignalTracker(), pod)
    assert event.container_id == CID_C
    assert event.details["state"] == "state"


def test_pod_signal_field_copied() -> None:
    block = terminated("OOMKilled", container_id=CID_A)
    block["terminated"]["signal"] = 9
    pod = make_pod(name="x", containers=[ContainerSpec(name="app", last_state=block)])
    [event] = run(SignalTracker(), pod)
    assert event.details["signal"] == 9


def test_old_termination_not_re_emitted_across_updates() -> None:
    tracker = SignalTracker()
    pod = oom_pod()
    assert len(run(tracker, pod)) == 1
    for version in ("2", "3", "4"):
        later = copy.deepcopy(pod)
        later["metadata"]["resourceVersion"] = version
        later["status"]["containerStatuses"][0]["ready"] = version != "3"
        assert run(tracker, {"type": "MODIFIED", "object": later}) == []
    assert tracker.counts["skipped_duplicate"] == 3


def test_second_oom_kill_is_a_new_signal() -> None:
    tracker = SignalTracker()
    first = oom_pod()
    [one] = run(tracker, first)
    second = copy.deepcopy(first)
    status = second["status"]["containerStatuses"][0]
    status["restartCount"] = 2
    status["containerID"] = "containerd://" + CID_C
    status["lastState"] = terminated(
        "OOMKilled", container_id=CID_B, started_at="2026-11-27T10:05:01Z", finished_at="2026-11-27T10:09:00Z"
    )
    [two] = run(tracker, second)
    assert two.container_id == CID_B
    assert two.event_id != one.event_id
    assert two.time == "2026-11-27T10:09:00.000000Z"


def test_last_state_without_container_id_does_not_borrow_the_new_one() -> None:
    """lastState's killed container is not status.containerID: no id, and a later restart of
    the new container (which changes status.containerID) does not make the old kill new again."""
    tracker = SignalTracker()
    spec = ContainerSpec(name="app", container_id=CID_B, last_state=terminated("OOMKilled"))
    pod = make_pod(name="x", uid="aaaaaaaa-0000-4000-8000-000000000001", containers=[spec])
    [event] = run(tracker, pod)
    assert event.container_id is None
    later = copy.deepcopy(pod)
    later["status"]["containerStatuses"][0]["containerID"] = "containerd://" + CID_C
    assert run(tracker, later) == []


def test_same_termination_in_state_and_last_state_counts_once() -> None:
    block = terminated("OOMKilled", container_id=CID_A)
    spec = ContainerSpec(name="app", container_id=CID_A, state=block, last_state=block)
    assert len(run(SignalTracker(), make_pod(name="x", containers=[spec]))) == 1


def test_init_and_ephemeral_containers() -> None:
    specs = [
        ContainerSpec(name="app"),
        ContainerSpec(name="migrate", kind="init", state=terminated("OOMKilled", container_id=CID_A)),
        ContainerSpec(name="debugger", kind="ephemeral", state=terminated("OOMKilled", container_id=CID_B)),
    ]
    events = run(SignalTracker(), make_pod(name="x", containers=specs))
    kinds = {e.container: e.details["container_kind"] for e in events}
    assert kinds == {"migrate": "init", "debugger": "ephemeral"}
    assert {e.container_id for e in events} == {CID_A, CID_B}


def test_pod_with_two_oomkilled_containers() -> None:
    specs = [
        ContainerSpec(name="app", last_state=terminated("OOMKilled", container_id=CID_A)),
        ContainerSpec(name="sidecar", last_state=terminated("OOMKilled", container_id=CID_B)),
    ]
    tracker = SignalTracker()
    events = run(tracker, make_pod(name="x", containers=specs))
    assert sorted(e.container or "" for e in events) == ["app", "sidecar"]
    assert len({e.event_id for e in events}) == 2
    assert run(tracker, make_pod(name="x", uid=events[0].pod_uid, containers=specs)) == []


def test_other_terminations_are_not_signals() -> None:
    specs = [
        ContainerSpec(name="a", last_state=terminated("Error", container_id=CID_A)),
        ContainerSpec(name="b", last_state=terminated("Completed", exit_code=0, container_id=CID_B)),
    ]
    assert run(SignalTracker(), make_pod(name="x", containers=specs)) == []


def test_deleted_pod_still_yields_its_signals() -> None:
    pod = oom_pod(deletion_timestamp="2026-11-27T10:06:00Z")
    tracker = SignalTracker()
    [event] = run(tracker, {"type": "DELETED", "object": pod})
    assert event.container_id == CID_A
    # seen before it was deleted: nothing new
    tracker2 = SignalTracker()
    run(tracker2, {"type": "MODIFIED", "object": oom_pod()})
    assert run(tracker2, {"type": "DELETED", "object": pod}) == []


def test_node_argument_when_spec_has_no_node_name() -> None:
    pod = oom_pod()
    del pod["spec"]["nodeName"]
    [event] = run(SignalTracker(), pod, node="node-z")
    assert event.host == "node-z"
    pod2 = oom_pod()
    [event2] = run(SignalTracker(), pod2, node="node-z")
    assert event2.host == "node-a"  # spec.nodeName wins


def test_evicted_pod_once_per_uid() -> None:
    message = (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 95420Ki. "
        "Container app was using 1Gi, request is 64Mi, has larger consumption of memory. "
        "Container side was using 300Mi, request is 0, has larger consumption of memory. "
    )
    pod = make_pod(name="x", phase="Failed", status_reason="Evicted", status_message=message)
    tracker = SignalTracker()
    [event] = run(tracker, pod)
    assert event.type == "k8s_evicted"
    assert event.container is None  # two offenders: no single container
    assert event.details["offending_containers"] == [
        {"container": "app", "usage": "1Gi", "request": "64Mi"},
        {"container": "side", "usage": "300Mi", "request": "0"},
    ]
    assert event.details["starved_resource"] == "memory"
    assert event.details["message"] == message
    assert run(tracker, pod) == []
    assert run(tracker, {"type": "DELETED", "object": pod}) == []


def test_evicted_pod_older_kubelet_message() -> None:
    message = "The node was low on resource: memory. Container app was using 1.5Gi, which exceeds its request of 1Gi. "
    pod = make_pod(name="x", phase="Failed", status_reason="Evicted", status_message=message)
    [event] = run(SignalTracker(), pod)
    assert event.container == "app"
    assert event.details["offending_containers"] == [{"container": "app", "usage": "1.5Gi", "request": "1Gi"}]


def test_pod_rejected_for_memory_pressure() -> None:
    pod = make_pod(
        name="x",
        phase="Failed",
        status_reason="Evicted",
        status_message="The node had condition: [MemoryPressure]. ",
    )
    [event] = run(SignalTracker(), pod)
    assert event.details["node_conditions"] == ["MemoryPressure"]


@pytest.mark.parametrize(
    "message",
    [
        "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, available: 10Mi. ",
        'Container app exceeded its local ephemeral storage limit "1Gi". ',
        "The node had condition: [DiskPressure]. ",
        None,
    ],
)
def test_non_memory_eviction_skipped(message: str | None) -> None:
    tracker = SignalTracker()
    pod = make_pod(name="x", phase="Failed", status_reason="Evicted", status_message=message)
    assert run(tracker, pod) == []
    assert tracker.counts["skipped_not_memory"] == 1


# --------------------------------------------------------------------------- Event objects


def npd_event(count: int, **kwargs: Any) -> dict[str, Any]:
    last = f"2026-11-27T10:{5 + count:02d}:00Z"
    return make_event(
        reason="OOMKilling",
        message="Killed process 42 (leaky) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        uid="e0000000-0000-4000-8000-00000000000e",
        count=count,
        last_timestamp=last,
        resource_version=str(100 + count),
        **kwargs,
    )


def occurrences(events: list[K8sEvent]) -> list[int]:
    return [e.occurrence for e in events]


def test_count_increments_one_to_three() -> None:
    tracker = SignalTracker()
    seen: list[K8sEvent] = []
    for count in (1, 2, 3):
        got = run(tracker, npd_event(count))
        assert occurrences(got) == [count]
        seen.extend(got)
    assert len(seen) == 3
    assert len({e.event_id for e in seen}) == 3
    assert [e.time for e in seen] == [
        "2026-11-27T10:06:00.000000Z",
        "2026-11-27T10:07:00.000000Z",
        "2026-11-27T10:08:00.000000Z",
    ]


def test_count_jump_emits_each_new_occurrence() -> None:
    tracker = SignalTracker()
    run(tracker, npd_event(3))
    got = run(tracker, npd_event(5))
    assert occurrences(got) == [4, 5]
    assert got[0].details["time_exact"] is False
    assert got[1].details["time_exact"] is True
    assert got[0].time == got[1].time == "2026-11-27T10:10:00.000000Z"


def test_redelivery_is_a_duplicate() -> None:
    tracker = SignalTracker()
    assert occurrences(run(tracker, npd_event(2))) == [1, 2]
    assert run(tracker, npd_event(2)) == []
    assert run(tracker, {"type": "MODIFIED", "object": npd_event(2)}) == []
    assert tracker.counts["skipped_duplicate"] == 2


def test_out_of_order_is_stale() -> None:
    tracker = SignalTracker()
    assert occurrences(run(tracker, npd_event(5))) == [1, 2, 3, 4, 5]
    assert run(tracker, npd_event(3)) == []
    assert tracker.counts["skipped_stale"] == 1
    assert occurrences(run(tracker, npd_event(6))) == [6]


def test_first_seen_object_backfill_is_capped() -> None:
    tracker = SignalTracker(max_backfill=3)
    got = run(tracker, npd_event(10))
    assert occurrences(got) == [8, 9, 10]
    assert got[0].skipped_occurrences == {"first": 1, "last": 7}
    assert tracker.counts["backfill_capped"] == 1


def covered_once(events: list[K8sEvent] | list[dict[str, Any]]) -> list[int]:
    """Every occurrence the events cover (their own, and their declared skipped ranges), sorted;
    fails when one is covered twice."""
    covered: list[int] = []
    for event in events:
        data = event if isinstance(event, dict) else orjson.loads(orjson.dumps(event))
        covered.append(data["occurrence"])
        skipped = data["skipped_occurrences"]
        if skipped is not None:
            assert skipped["first"] <= skipped["last"] < data["occurrence"], data
            covered.extend(range(skipped["first"], skipped["last"] + 1))
    assert len(covered) == len(set(covered)), "an occurrence is covered twice"
    return sorted(covered)


def test_an_event_first_seen_with_count_1074_declares_the_occurrences_it_does_not_emit() -> None:
    """NPD has been counting kills for an hour when the service starts: 100 events, the first of
    them declaring occurrences 1..974, which together cover 1..1074 exactly once."""
    tracker = SignalTracker()  # the default cap, 100
    got = run(tracker, load("npd-oomkilling-combined-1074.json"))
    assert occurrences(got) == list(range(975, 1075))
    assert got[0].skipped_occurrences == {"first": 1, "last": 974}
    assert all(e.skipped_occurrences is None for e in got[1:])
    assert covered_once(got) == list(range(1, 1075))
    assert tracker.counts["backfill_capped"] == 1
    # the newest occurrence carries the exact last time and the pid the message names
    assert (got[-1].time, got[-1].details["time_exact"], got[-1].pid) == (
        "2026-11-27T10:04:58.000000Z",
        True,
        31877,
    )
    assert got[0].details["first_timestamp"] == "2026-11-27T09:02:11.000000Z"
    # the combined message names only the newest kill: earlier occurrences do not claim its pid
    assert all(e.pid is None and e.comm is None for e in got[:-1]) and got[-1].comm == "java"
    # the API relists (or the watch resends) the same object: nothing new, nothing declared again
    assert run(tracker, load("npd-oomkilling-combined-1074.json")) == []


def test_a_later_jump_declares_only_its_own_gap() -> None:
    tracker = SignalTracker()
    first = run(tracker, load("npd-oomkilling-combined-1074.json"))
    later = copy.deepcopy(load("npd-oomkilling-combined-1074.json"))
    later["count"] = 4321
    second = run(tracker, later)
    assert occurrences(second) == list(range(4222, 4322))
    assert second[0].skipped_occurrences == {"first": 1075, "last": 4221}
    assert covered_once(first + second) == list(range(1, 4322))
    small = copy.deepcopy(later)
    small["count"] = 4330  # a jump within the cap: every occurrence, nothing declared
    third = run(tracker, small)
    assert occurrences(third) == list(range(4322, 4331))
    assert all(e.skipped_occurrences is None for e in third)


def test_no_cap_emits_every_occurrence() -> None:
    got = run(SignalTracker(max_backfill=0), load("npd-oomkilling-combined-1074.json"))
    assert occurrences(got) == list(range(1, 1075))
    assert all(e.skipped_occurrences is None for e in got)
    with pytest.raises(ValueError, match="max_backfill"):
        SignalTracker(max_backfill=-1)


def test_ids_are_deterministic_across_restarts() -> None:
    first = run(SignalTracker(), npd_event(3))
    again = run(SignalTracker(), npd_event(3))
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert first[2].event_id == make_signal_id("k8s_oom_killing", "e0000000-0000-4000-8000-00000000000e", 3)


def test_series_count_updates() -> None:
    tracker = SignalTracker()
    uid = "5e000000-0000-4000-8000-000000000005"
    base = {"reason": "SystemOOM", "note": "System OOM encountered, victim process: java, pid: 7", "uid": uid}
    assert occurrences(run(tracker, make_events_k8s_io_event(**base))) == [1]
    got = run(
        tracker, make_events_k8s_io_event(**base, series_count=3, last_observed="2026-11-27T10:09:00.5Z")
    )
    assert occurrences(got) == [2, 3]
    assert got[-1].time == "2026-11-27T10:09:00.500000Z"
    assert run(tracker, make_events_k8s_io_event(**base, series_count=2)) == []
    assert tracker.counts["skipped_stale"] == 1


def test_series_count_one_is_still_a_repeat() -> None:
    """Some client-go versions create the series with Count 1 on the first repeat: a series means
    the event happened at least twice, so occurrence 2 is not lost as a duplicate of the first."""
    tracker = SignalTracker()
    base = {
        "reason": "SystemOOM",
        "note": "System OOM encountered",
        "uid": "5e000000-0000-4000-8000-000000000006",
    }
    assert occurrences(run(tracker, make_events_k8s_io_event(**base))) == [1]
    assert occurrences(run(tracker, make_events_k8s_io_event(**base, series_count=1))) == [2]


def test_events_k8s_io_deprecated_count_and_source() -> None:
    obj = make_events_k8s_io_event(
        reason="OOMKilling", note="Killed process 1 (x) total-vm:1kB", host="node-q"
    )
    obj["deprecatedCount"] = 2
    obj["reportingInstance"] = "kubelet-somewhere"
    events = run(SignalTracker(), obj)
    assert occurrences(events) == [1, 2]
    assert events[0].host == "node-q"  # deprecatedSource.host


def test_core_event_with_series_uses_series_count() -> None:
    obj = npd_event(1)
    obj["series"] = {"count": 4, "lastObservedTime": "2026-11-27T10:20:00.000001Z"}
    events = run(SignalTracker(), obj)
    assert occurrences(events) == [1, 2, 3, 4]
    assert events[-1].time == "2026-11-27T10:20:00.000001Z"


def test_pod_oom_killing_fork_reason() -> None:
    obj = make_event(
        reason="PodOOMKilling",
        message="Memory cgroup out of memory: Killed process 8 (php-fpm) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
    )
    [event] = run(SignalTracker(), obj)
    assert (event.type, event.reason, event.pid, event.comm) == (
        "k8s_oom_killing",
        "PodOOMKilling",
        8,
        "php-fpm",
    )


def test_host_from_node_name_when_source_has_none() -> None:
    obj = make_event(reason="SystemOOM", message="System OOM encountered", involved_name="node-n", host="")
    obj["source"] = {"component": "kubelet"}
    obj["reportingInstance"] = ""
    [event] = run(SignalTracker(), obj)
    assert event.host == "node-n"
    assert (event.pid, event.comm) == (None, None)


def test_evicted_event_container_from_field_path_and_annotations() -> None:
    obj = make_event(
        reason="Evicted",
        message="The node was low on resource: memory. Threshold quantity: 100Mi, available: 1Mi. ",
        involved_kind="Pod",
        involved_name="w-1",
        namespace="team",
        component="kubelet",
        annotations={
            "offending_containers": "a,b",
            "offending_containers_usage": "200Mi,300Mi",
            "starved_resource": "memory",
        },
    )
    [event] = run(SignalTracker(), obj)
    assert event.namespace == "team" and event.pod == "w-1"
    assert event.details["offending_containers"] == [
        {"container": "a", "usage": "200Mi", "request": None},
        {"container": "b", "usage": "300Mi", "request": None},
    ]
    assert event.container is None


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"starved_resource": "ephemeral-storage"}, "The node was low on resource: ephemeral-storage. "),
        (None, "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi. "),
        (None, "The node was low on resource: pids. "),
    ],
)
def test_non_memory_evicted_event_skipped(annotations: dict[str, str] | None, message: str) -> None:
    tracker = SignalTracker()
    obj = make_event(reason="Evicted", message=message, involved_kind="Pod", annotations=annotations)
    assert run(tracker, obj) == []
    assert tracker.counts["skipped_not_memory"] == 1


def test_evicted_on_a_node_is_not_a_pod_eviction() -> None:
    tracker = SignalTracker()
    obj = make_event(reason="Evicted", message="The node was low on resource: memory. ")
    assert run(tracker, obj) == []
    assert tracker.counts["skipped_not_memory"] == 1


@pytest.mark.parametrize(
    ("reason", "message", "expected"),
    [
        ("EvictionThresholdMet", "Attempting to reclaim memory", "k8s_memory_pressure"),
        ("EvictionThresholdMet", "Attempting to reclaim ephemeral-storage", None),
        (
            "NodeHasInsufficientMemory",
            "Node node-a status is now: NodeHasInsufficientMemory",
            "k8s_memory_pressure",
        ),
        ("NodeHasSufficientMemory", "Node node-a status is now: NodeHasSufficientMemory", None),
        ("NodeConditionChanged", "Node condition MemoryPressure is now: True", "k8s_memory_pressure"),
        ("NodeConditionChanged", "Node condition MemoryPressure is now: False", None),
        ("NodeHasNoMemoryPressure", "NoMemoryPressure", None),
        ("BackOff", "Back-off restarting failed container app in pod x", None),
        ("Killing", "Stopping container app", None),
    ],
)
def test_memory_pressure_reasons(reason: str, message: str, expected: str | None) -> None:
    tracker = SignalTracker()
    events = run(
        tracker, make_event(reason=reason, message=message, component="kubelet", event_type="Normal")
    )
    assert [e.type for e in events] == ([expected] if expected else [])
    if expected is None:
        assert tracker.counts["skipped_not_memory"] == 1
    else:
        assert events[0].host == "node-a"


def test_event_list_is_read_item_by_item() -> None:
    items = [npd_event(1), load("kubelet-systemoom.json")]
    for item in items:
        del item["kind"], item["apiVersion"]
    events = run(SignalTracker(), {"apiVersion": "v1", "kind": "EventList", "items": items})
    assert [e.type for e in events] == ["k8s_oom_killing", "k8s_system_oom", "k8s_system_oom"]


def test_lru_forgets_oldest_object() -> None:
    tracker = SignalTracker(max_keys=2)
    objs = [
        make_event(
            reason="SystemOOM",
            message="System OOM encountered",
            uid=f"{i}0000000-0000-4000-8000-000000000000",
        )
        for i in range(3)
    ]
    for obj in objs:
        assert len(run(tracker, obj)) == 1
    assert run(tracker, objs[2]) == []  # remembered
    again = run(tracker, objs[0])  # forgotten: re-emitted, with the same id
    assert len(again) == 1
    assert again[0].event_id == make_signal_id("k8s_system_oom", "00000000-0000-4000-8000-000000000000", 1)


# --------------------------------------------------------------------------- garbage


GARBAGE: list[Any] = [
    None,
    [],
    "Pod",
    42,
    {},
    {"kind": "Pod"},
    {"kind": "Pod", "metadata": "x"},
    {"kind": "Pod", "metadata": {"name": "no-uid"}},
    {"kind": "Pod", "metadata": {"uid": "u"}, "status": []},
    {"kind": "Pod", "metadata": {"uid": "u"}, "status": {"containerStatuses": "app"}},
    {"kind": "Pod", "metadata": {"uid": "u"}, "status": {"containerStatuses": [None]}},
    {
        "kind": "Pod",
        "metadata": {"uid": "u"},
        "status": {"containerStatuses": [{"name": "a", "lastState": 7}]},
    },
    {"kind": "Event", "metadata": {"uid": "u"}, "reason": 5},
    {"kind": "Event", "metadata": {"uid": "u"}, "reason": "OOMKilling", "message": ["x"]},
    {"kind": "Event", "metadata": {"uid": "u"}, "reason": "OOMKilling", "involvedObject": "node"},
    {"kind": "Event", "metadata": {"uid": "u"}, "reason": "SystemOOM", "series": 3},
    {"kind": "Event", "metadata": {}, "reason": "SystemOOM", "message": "System OOM encountered"},
    {"kind": "Event", "reason": "SystemOOM"},
    {"type": "ADDED", "object": "pod"},
    {"type": "WHATEVER", "object": {"kind": "Pod"}},
    {"type": "ADDED", "object": None},
]


@pytest.mark.parametrize("obj", GARBAGE)
def test_garbage_is_counted_not_raised(obj: Any) -> None:
    tracker = SignalTracker()
    assert tracker.from_object(obj, source=SOURCE) == []
    assert tracker.counts["bad_object"] == 1


def test_direct_entry_points_take_garbage() -> None:
    tracker = SignalTracker()
    assert tracker.from_pod(None, source=SOURCE) == []  # type: ignore[arg-type]
    assert tracker.from_event_object("x", source=SOURCE) == []  # type: ignore[arg-type]
    assert tracker.counts["bad_object"] == 2


def test_bad_timestamps_are_null_not_errors() -> None:
    obj = npd_event(2)
    obj["firstTimestamp"] = "not a time"
    obj["lastTimestamp"] = 12
    events = run(SignalTracker(), obj)
    assert [e.time for e in events] == [None, None]
    pod = oom_pod()
    pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] = "2026-13-45T99:00:00Z"
    [event] = run(SignalTracker(), pod)
    assert event.time is None and event.details["finished_at"] is None


def test_other_kinds_and_bookmarks_are_counted() -> None:
    tracker = SignalTracker()
    assert tracker.from_object({"kind": "Node", "metadata": {"name": "n"}}, source=SOURCE) == []
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Event", "metadata": {"resourceVersion": "9"}}}
    assert tracker.from_object(bookmark, source=SOURCE) == []
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    assert tracker.from_object(error, source=SOURCE) == []
    assert (
        tracker.counts["skipped_kind"],
        tracker.counts["skipped_bookmark"],
        tracker.counts["watch_error"],
    ) == (
        1,
        1,
        1,
    )
    assert tracker.counts["bad_object"] == 0


def test_bad_object_leaves_no_dedupe_state() -> None:
    """A pod whose second status is garbage yields nothing, and the good part is not remembered."""
    tracker = SignalTracker()
    pod = oom_pod()
    broken = copy.deepcopy(pod)
    broken["status"]["containerStatuses"].append("garbage")
    assert run(tracker, broken) == []
    assert len(run(tracker, pod)) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
TEMPLATES = [load(name) for name in sorted(p.name for p in DATA.glob("*.json"))]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES), data=st.data(), junk=json_values)
def test_mutated_real_objects_never_raise(template: dict[str, Any], data: st.DataObject, junk: Any) -> None:
    obj = copy.deepcopy(template)
    path = data.draw(st.sampled_from(_paths(obj)[1:]))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    tracker = SignalTracker()
    checked(tracker.from_object(obj, source=SOURCE))


@settings(max_examples=200, deadline=None)
@given(junk=json_values)
def test_random_json_never_raises(junk: Any) -> None:
    # from_object catches every exception itself, so "never raises" alone cannot fail: whatever
    # it does return must also be a valid event.
    checked(SignalTracker().from_object(junk, source=SOURCE))


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=12), data=st.data())
def test_any_order_and_duplication_gives_each_occurrence_once(counts: list[int], data: st.DataObject) -> None:
    updates = data.draw(st.permutations(counts + data.draw(st.lists(st.sampled_from(counts), max_size=6))))
    tracker = SignalTracker(max_backfill=100)
    ids: list[str] = []
    for count in updates:
        ids.extend(e.event_id for e in tracker.from_object(npd_event(count), source=SOURCE))
    uid = "e0000000-0000-4000-8000-00000000000e"
    expected = {make_signal_id("k8s_oom_killing", uid, n) for n in range(1, max(counts) + 1)}
    assert len(ids) == len(set(ids))
    assert set(ids) == expected


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=10),
    cap=st.integers(min_value=1, max_value=20),
)
def test_capped_backfill_still_never_duplicates(counts: list[int], cap: int) -> None:
    tracker = SignalTracker(max_backfill=cap)
    events: list[K8sEvent] = []
    for count in counts:
        events.extend(tracker.from_object(npd_event(count), source=SOURCE))
    got = [e.occurrence for e in events]
    top = max(counts)
    assert len(got) == len(set(got))
    assert set(got) <= set(range(1, top + 1))
    assert set(range(max(1, top - cap + 1), top + 1)) <= set(got)  # the newest ones are always there
    assert covered_once(events) == list(range(1, top + 1)), "emitted + declared cover 1..count once"


# --------------------------------------------------------------------------- schemas


def test_schemas_match_the_dataclasses() -> None:
    k8s_fields = {f.name for f in dataclasses.fields(K8sEvent)}
    assert set(K8S_EVENT_SCHEMA["required"]) == k8s_fields
    assert set(K8S_EVENT_SCHEMA["properties"]) == k8s_fields
    incident_fields = {f.name for f in dataclasses.fields(IncidentEvent)}
    assert set(INCIDENT_SCHEMA["required"]) == incident_fields
    assert set(INCIDENT_SCHEMA["properties"]) == incident_fields


def test_incident_schema_accepts_an_incident_and_rejects_extras() -> None:
    incident = IncidentEvent(
        event_id=make_signal_id("incident", "x"),
        incident_id="inc-1",
        time="2026-11-27T10:05:00.000000Z",
        first_seen="2026-11-27T10:05:00.000000Z",
        last_seen="2026-11-27T10:05:02.000000Z",
        host="node-a",
        signals=["k8s_oom_killed", "oom_kill"],
        signal_event_ids=[make_signal_id("a"), make_signal_id("b")],
        kills=1,
        victims=[{"pid": 42, "comm": "leaky"}],
        kubernetes=IncidentKubernetes(
            namespace="default",
            pod="web-1",
            pod_uid="11111111-2222-4333-8444-555555555555",
            container="app",
            container_id=None,
            workload=ObjectRef("Deployment", "web"),
        ),
        verdict="container_limit",
        visible_in_kubernetes=True,
        workload_kills_in_window=1,
        window_seconds=30.0,
    )
    data = orjson.loads(orjson.dumps(incident))
    validate_incident(data)
    data["surprise"] = 1
    with pytest.raises(Exception, match="surprise"):
        validate_incident(data)


def test_watch_source_position_validates() -> None:
    source = Source("k8s_watch", "k8s_api", {"resource": "events", "resource_version": "918273"})
    [event] = checked(SignalTracker().from_object(load("npd-oomkilling-5x.json"), source=source))
    assert event.source is source


def test_k8s_schema_rejects_unknown_details_and_types() -> None:
    [event] = run(SignalTracker(), oom_pod())
    data = orjson.loads(orjson.dumps(event))
    bad = copy.deepcopy(data)
    bad["details"]["made_up"] = True
    with pytest.raises(Exception, match="made_up"):
        validate_k8s_event(bad)
    bad = copy.deepcopy(data)
    bad["type"] = "oom_kill"
    with pytest.raises(Exception, match="oom_kill"):
        validate_k8s_event(bad)


def test_signals_and_incidents_survive_the_spool_round_trip() -> None:
    """The pipeline spools failed events as JSON and rebuilds them by type when Kafka returns."""
    from streamer.enrich.incidents import Correlator

    tracker = SignalTracker()
    (signal,) = tracker.from_object(
        make_event(reason="SystemOOM", message="System OOM encountered, victim process: java, pid: 31337"),
        source=Source("k8s_file", "k8s_json", {"path": "/x", "offset": 10, "line": 1}),
    )
    assert any_event_from_dict(orjson.loads(event_to_json(signal))) == signal
    correlator = Correlator()
    correlator.observe(signal, 0.0)
    (incident,) = correlator.flush()
    assert isinstance(incident, IncidentEvent)
    assert any_event_from_dict(orjson.loads(event_to_json(incident))) == incident
    with pytest.raises(ValueError, match="unknown event type"):
        any_event_from_dict({"type": "k8s_bogus", "schema_version": 1})
