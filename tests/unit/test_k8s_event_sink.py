"""The Kubernetes Event sink against the fake API server (tests/k8sfake) with create/patch of Events."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from k8sfake.client import plain_config, until
from k8sfake.server import FakeApiServer
from timeline_fixtures import T0, kill_event

from parsers.events import OomEvent, event_from_dict
from streamer.kube.api import KubeApi
from streamer.sinks.k8s_events import REASON, K8sEventSink, K8sEventsOptions, build, kill_message

POD_UID = "069f04fa-7f16-4864-9226-0642f8fc2327"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kill(pod: str = "web-1", container: str = "web", pid: int = 4242, at: float = T0, **kw: Any) -> OomEvent:
    data = kill_event(
        at=at,
        host="node-a",
        namespace=kw.pop("namespace", "payments"),
        workload=("Deployment", "web"),
        pod=pod,
        container=container,
        limit_fired=kw.pop("limit_fired", "container_limit"),
        rss_mib=kw.pop("rss_mib", 511),
        limit_mib=kw.pop("limit_mib", 512),
        pid=pid,
        comm="java",
        incident_id=None,
        pod_uid=kw.pop("pod_uid", POD_UID),
    )
    return event_from_dict(data)


def events_on(server: FakeApiServer, namespace: str = "payments") -> list[dict[str, Any]]:
    return server.objects("v1", "Event", namespace)


def writes(server: FakeApiServer) -> list[str]:
    return [f"{r.method} {r.status}" for r in server.requests if r.method in ("POST", "PATCH")]


async def _sink(
    server: FakeApiServer, tmp_path: Path, clock: FakeClock, **options: Any
) -> tuple[KubeApi, K8sEventSink]:
    api = KubeApi(plain_config(tmp_path, server.url))
    await api.__aenter__()
    sink = K8sEventSink(K8sEventsOptions(enabled=True, **options), api, "node-a", clock=clock)
    await sink.__aenter__()
    return api, sink


def test_disabled_by_default_builds_nothing() -> None:
    assert K8sEventsOptions().enabled is False
    assert build(K8sEventsOptions(), {"api": None, "node": "n"}) is None


def test_message_names_process_container_limit_rss_and_trigger() -> None:
    assert kill_message(kill()) == (
        "process java (pid 4242) in container web killed by the kernel OOM killer at the container limit "
        "512Mi; RSS 511Mi (99.8%); trigger python3"
    )
    node = kill_message(kill(limit_fired="node", limit_mib=None))
    assert "with the whole node out of memory" in node and "%" not in node


async def test_one_event_per_kill_on_the_pod(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        api, sink = await _sink(server, tmp_path, clock)
        try:
            sink.observe(kill())
            sink.observe(kill(pod="api-1", container="api", namespace="default", pid=7))
            await until(lambda: len(server.objects("v1", "Event")) == 2, what="two Events")
        finally:
            await sink.aclose()
            await api.close()
        [event] = events_on(server)
        assert event["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": "payments",
            "name": "web-1",
            "uid": POD_UID,
            "fieldPath": "spec.containers{web}",
        }
        assert event["type"] == "Warning"
        assert event["reason"] == REASON
        assert event["source"] == {"component": "oomstream", "host": "node-a"}
        assert event["reportingComponent"] == "oomstream"
        assert event["reportingInstance"] == "oomstream-node-a"
        assert event["count"] == 1
        assert event["message"].startswith(
            "process java (pid 4242) in container web killed by the kernel OOM killer"
        )
        assert event["firstTimestamp"] == "2026-12-04T14:00:00Z" == event["lastTimestamp"]
        assert event["metadata"]["name"].startswith("web-1.")
        assert writes(server) == ["POST 201", "POST 201"]


async def test_repeats_within_the_window_update_the_count(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        api, sink = await _sink(server, tmp_path, clock, repeat_window_seconds=600)
        try:
            sink.observe(kill(pid=1, at=T0))
            await until(lambda: sink.counts["events_created"] == 1)
            for n, pid in enumerate((2, 3), start=1):
                clock.now += 60
                sink.observe(kill(pid=pid, at=T0 + 60 * n))
                await until(lambda n=n: sink.counts["events_patched"] == n, what=f"patch {n}")
            [event] = events_on(server)
            assert event["count"] == 3
            assert event["lastTimestamp"] == "2026-12-04T14:02:00Z"
            assert event["firstTimestamp"] == "2026-12-04T14:00:00Z"
            assert "(pid 3)" in event["message"]
            # Past the window: a new Event.
            clock.now += 601
            sink.observe(kill(pid=4, at=T0 + 900))
            await until(lambda: sink.counts["events_created"] == 2)
            assert sorted(e["count"] for e in events_on(server)) == [1, 3]
            # The Event expired on the server (its TTL): the next repeat creates a new one.
            latest = max(
                events_on(server), key=lambda e: e["metadata"]["creationTimestamp"] + e["metadata"]["name"]
            )
            server.delete(latest)
            clock.now += 10
            sink.observe(kill(pid=5, at=T0 + 910))
            await until(lambda: sink.counts["events_created"] == 3)
            assert sink.counts["patch_not_found"] == 1
        finally:
            await sink.aclose()
            await api.close()
        assert writes(server) == ["POST 201", "PATCH 200", "PATCH 200", "POST 201", "PATCH 404", "POST 201"]


async def test_a_200_kill_storm_is_rate_bounded_then_aggregated(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        api, sink = await _sink(server, tmp_path, clock, burst_calls=25, refill_seconds=300)
        try:
            # 200 kills in 50 pods (4 each), all at once.
            for n in range(200):
                sink.observe(kill(pod=f"web-{n % 50}", pid=1000 + n))
            await until(lambda: sink.counts["kills_observed"] == 200 and sink.counts["rate_limited"] >= 1)
            assert len(writes(server)) == 25  # the burst, and not one call more
            clock.now += 300 * 3  # three tokens come back
            sink._wakeup.set()
            await until(lambda: len(writes(server)) == 28, what="three more calls")
            clock.now += 300 * 1000  # the bucket refills (to the burst) and drains the rest
            sink._wakeup.set()
            await until(lambda: sink.counts["kills_posted"] == 200, timeout=10, what="all kills posted")
        finally:
            await sink.aclose()
            await api.close()
        events = events_on(server)
        assert len(events) == 50  # one Event per pod: repeats and aggregation, no new objects
        assert sum(e["count"] for e in events) == 200  # no kill missing from the counts
        assert any(e["message"].startswith("(combined from similar events): ") for e in events)
        assert len(writes(server)) <= 25 + 3 + 50
        assert sink.counts["kills_aggregated"] > 0


async def test_rbac_forbidden_is_reported_clearly_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        server.forbid("create", "events")
        api, sink = await _sink(server, tmp_path, clock)
        try:
            with caplog.at_level(logging.ERROR, logger="streamer.sinks.k8s_events"):
                sink.observe(kill())
                await until(lambda: sink.counts["errors_403"] == 1)
            assert "RBAC does not allow verb 'create' on resource 'events'" in caplog.text
            assert "create and patch on events" in caplog.text
            assert sink.counts["kills_dropped_forbidden"] == 1
            # RBAC fixed: the next kill is posted.
            server.allow("create", "events")
            sink.observe(kill(pid=5))
            await until(lambda: sink.counts["events_created"] == 1)
        finally:
            await sink.aclose()
            await api.close()


async def test_server_errors_are_retried_and_kills_kept(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        server.inject_errors(503, count=1)
        api, sink = await _sink(server, tmp_path, clock)
        try:
            sink.observe(kill())
            await until(lambda: sink.counts["errors_503"] == 1)
            clock.now += 10  # past the retry delay
            sink._wakeup.set()
            await until(lambda: sink.counts["events_created"] == 1)
        finally:
            await sink.aclose()
            await api.close()
        assert events_on(server)[0]["count"] == 1


async def test_observe_never_blocks_a_full_queue_counts(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        api = KubeApi(plain_config(tmp_path, server.url))
        await api.__aenter__()
        sink = K8sEventSink(K8sEventsOptions(enabled=True, queue_events=3), api, "node-a", clock=clock)
        try:
            for n in range(5):  # not started: nothing drains the queue
                sink.observe(kill(pid=n))
            assert sink.counts["dropped_queue_full"] == 2
            not_in_pod = kill()
            sink.observe(event_from_dict({**_dict(not_in_pod), "kubernetes": None}))
            assert sink.counts["skipped_not_in_a_pod"] == 1
        finally:
            await api.close()


def _dict(event: OomEvent) -> dict[str, Any]:
    from parsers.events import event_to_dict

    return event_to_dict(event)
