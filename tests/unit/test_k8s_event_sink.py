"""The Kubernetes Event sink against the fake API server (tests/k8sfake) with create/patch of Events."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from k8sfake.client import plain_config, until
from k8sfake.server import FakeApiServer
from timeline_fixtures import T0, kill_event

from parsers.events import OomEvent, event_from_dict
from streamer.config import Config, ConfigError, add_cli_arguments, load_config
from streamer.kube.api import KubeApi
from streamer.sinks.base import DeliveryStatus, DeliveryTally
from streamer.sinks.k8s_events import REASON, K8sEventSink, K8sEventsOptions, kill_message

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
) -> tuple[K8sEventSink, DeliveryTally]:
    tally = DeliveryTally(keep_results=True)
    api = KubeApi(plain_config(tmp_path, server.url))
    sink = K8sEventSink(K8sEventsOptions(**options), api, "node-a", clock=clock, on_delivery=tally)
    await sink.start()
    return sink, tally


def test_enabled_as_a_side_sink_only_and_old_keys_name_the_new_ones(tmp_path: Path) -> None:
    assert "k8s_events" not in Config().sinks.enabled  # off by default
    config = load_config(None, {}, {"sinks.enabled": "kafka,k8s_events"})
    assert config.sinks.enabled == ("kafka", "k8s_events")
    with pytest.raises(ConfigError, match=r'k8s_events cannot be the first sink.*\["kafka", "k8s_events"\]'):
        load_config(None, {}, {"sinks.enabled": "k8s_events"})
    old = tmp_path / "old.toml"
    old.write_text("[k8s_events]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r'k8s_events.enabled is now sinks.enabled \(name "k8s_events"'):
        load_config(str(old), {}, {})
    old.write_text("[k8s_events]\nburst_calls = 5\n")
    with pytest.raises(ConfigError, match=r"k8s_events.burst_calls is now sinks.k8s_events.burst_calls"):
        load_config(str(old), {}, {})
    with pytest.raises(ConfigError, match=r"OOMSTREAM_SINKS_K8S_EVENTS_REFILL_SECONDS"):
        load_config(None, {"OOMSTREAM_K8S_EVENTS_REFILL_SECONDS": "1"}, {})
    for flags, message in (
        (["--k8s-events-enabled"], "list k8s_events in --sinks-enabled after the first sink"),
        (
            ["--k8s-events-burst-calls", "3"],
            "--k8s-events-burst-calls: renamed --sinks-k8s-events-burst-calls",
        ),
    ):
        parser = argparse.ArgumentParser(exit_on_error=False)
        add_cli_arguments(parser)
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
            parser.parse_args(flags)
        assert message in err.getvalue()
    with pytest.raises(ConfigError, match=r"sinks.k8s_events.burst_calls: must be >= 1"):
        load_config(None, {"OOMSTREAM_SINKS_K8S_EVENTS_BURST_CALLS": "0"}, {})


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
        sink, _tally = await _sink(server, tmp_path, clock)
        try:
            await sink.submit(kill())
            await sink.submit(kill(pod="api-1", container="api", namespace="default", pid=7))
            await until(lambda: len(server.objects("v1", "Event")) == 2, what="two Events")
        finally:
            await sink.close()
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
        sink, _tally = await _sink(server, tmp_path, clock, repeat_window_seconds=600)
        try:
            await sink.submit(kill(pid=1, at=T0))
            await until(lambda: sink.counts["events_created"] == 1)
            for n, pid in enumerate((2, 3), start=1):
                clock.now += 60
                await sink.submit(kill(pid=pid, at=T0 + 60 * n))
                await until(lambda n=n: sink.counts["events_patched"] == n, what=f"patch {n}")
            [event] = events_on(server)
            assert event["count"] == 3
            assert event["lastTimestamp"] == "2026-12-04T14:02:00Z"
            assert event["firstTimestamp"] == "2026-12-04T14:00:00Z"
            assert "(pid 3)" in event["message"]
            # Past the window: a new Event.
            clock.now += 601
            await sink.submit(kill(pid=4, at=T0 + 900))
            await until(lambda: sink.counts["events_created"] == 2)
            assert sorted(e["count"] for e in events_on(server)) == [1, 3]
            # The Event expired on the server (its TTL): the next repeat creates a new one.
            latest = max(
                events_on(server), key=lambda e: e["metadata"]["creationTimestamp"] + e["metadata"]["name"]
            )
            server.delete(latest)
            clock.now += 10
            await sink.submit(kill(pid=5, at=T0 + 910))
            await until(lambda: sink.counts["events_created"] == 3)
            assert sink.counts["patch_not_found"] == 1
        finally:
            await sink.close()
        assert writes(server) == ["POST 201", "PATCH 200", "PATCH 200", "POST 201", "PATCH 404", "POST 201"]


async def test_a_200_kill_storm_is_rate_bounded_then_aggregated(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        sink, tally = await _sink(server, tmp_path, clock, burst_calls=25, refill_seconds=300)
        try:
            # 200 kills in 50 pods (4 each), all at once.
            for n in range(200):
                await sink.submit(kill(pod=f"web-{n % 50}", pid=1000 + n))
            await until(lambda: sink.counts["kills_observed"] == 200 and sink.counts["rate_limited"] >= 1)
            assert len(writes(server)) == 25  # the burst, and not one call more
            clock.now += 300 * 3  # three tokens come back
            sink._wakeup.set()
            await until(lambda: len(writes(server)) == 28, what="three more calls")
            clock.now += 300 * 1000  # the bucket refills (to the burst) and drains the rest
            sink._wakeup.set()
            await until(lambda: sink.counts["kills_posted"] == 200, timeout=10, what="all kills posted")
        finally:
            await sink.close()
        events = events_on(server)
        assert len(events) == 50  # one Event per pod: repeats and aggregation, no new objects
        assert sum(e["count"] for e in events) == 200  # no kill missing from the counts
        assert any(e["message"].startswith("(combined from similar events): ") for e in events)
        assert len(writes(server)) <= 25 + 3 + 50
        assert sink.counts["kills_aggregated"] > 0
        assert tally.sent == 200 and tally.total == 200  # one result per kill, each once posted


async def test_rbac_forbidden_is_reported_clearly_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        server.forbid("create", "events")
        sink, tally = await _sink(server, tmp_path, clock)
        try:
            with caplog.at_level(logging.ERROR, logger="streamer.sinks.k8s_events"):
                await sink.submit(kill())
                await until(lambda: sink.counts["errors_403"] == 1)
            assert "RBAC does not allow verb 'create' on resource 'events'" in caplog.text
            assert "create and patch on events" in caplog.text
            assert sink.counts["kills_dropped_forbidden"] == 1
            assert [(r.status, r.reason) for r in tally.results] == [(DeliveryStatus.FAILED, "forbidden")]
            # RBAC fixed: the next kill is posted.
            server.allow("create", "events")
            await sink.submit(kill(pid=5))
            await until(lambda: sink.counts["events_created"] == 1)
        finally:
            await sink.close()


async def test_server_errors_are_retried_and_kills_kept(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        server.inject_errors(503, count=1)
        sink, _tally = await _sink(server, tmp_path, clock)
        try:
            await sink.submit(kill())
            await until(lambda: sink.counts["errors_503"] == 1)
            clock.now += 10  # past the retry delay
            sink._wakeup.set()
            await until(lambda: sink.counts["events_created"] == 1)
        finally:
            await sink.close()
        assert events_on(server)[0]["count"] == 1


async def test_submit_never_blocks_a_full_queue_counts(tmp_path: Path) -> None:
    clock = FakeClock()
    tally = DeliveryTally(keep_results=True)
    api = KubeApi(plain_config(tmp_path, "http://127.0.0.1:9"))
    sink = K8sEventSink(K8sEventsOptions(queue_events=3), api, "node-a", clock=clock, on_delivery=tally)
    for n in range(5):  # not started: nothing drains the queue
        await sink.submit(kill(pid=n))
    assert sink.counts["dropped_queue_full"] == 2
    assert [r.reason for r in tally.results] == ["queue_full", "queue_full"]
    not_in_pod = kill()
    await sink.submit(event_from_dict({**_dict(not_in_pod), "kubernetes": None}))
    assert sink.counts["skipped_not_in_a_pod"] == 1
    assert tally.results[-1].status is DeliveryStatus.ACKED  # nothing to post for it
    await sink.close()  # never started: the three queued kills are reported, not lost silently
    assert sink.counts["unsent_at_shutdown"] == 3
    assert tally.failed == 5 and tally.total == 6


async def test_each_copy_gets_one_result_and_a_resent_copy_is_posted_once(tmp_path: Path) -> None:
    """The spool resends an event the first sink failed to deliver: FanOutSink copies it again."""
    clock = FakeClock()
    async with FakeApiServer() as server:
        sink, tally = await _sink(server, tmp_path, clock)
        try:
            first = kill(pid=1)
            await sink.submit(first, ["ticket-1"])
            await until(lambda: tally.sent == 1)
            await sink.submit(first, ["ticket-1-resent"])
            await sink.submit(kill(pid=2), ["ticket-2"])
            await until(lambda: tally.sent == 3)
        finally:
            await sink.close()
        [event] = events_on(server)
        assert event["count"] == 2  # two kills, not three
        assert sink.counts["duplicates"] == 1
        assert [(r.positions, r.status, r.reason) for r in tally.results] == [
            (("ticket-1",), DeliveryStatus.ACKED, None),
            (("ticket-1-resent",), DeliveryStatus.ACKED, "duplicate"),
            (("ticket-2",), DeliveryStatus.ACKED, None),
        ]


async def test_repeats_set_the_series_as_events_k8s_io_v1_does(tmp_path: Path) -> None:
    clock = FakeClock()
    async with FakeApiServer() as server:
        sink, _tally = await _sink(server, tmp_path, clock)
        try:
            await sink.submit(kill(pid=1, at=T0))
            await until(lambda: sink.counts["events_created"] == 1)
            assert "series" not in events_on(server)[0]  # a single occurrence has no series
            for n in (1, 2):
                clock.now += 30
                await sink.submit(kill(pid=1 + n, at=T0 + 30 * n + 0.25))
                await until(lambda n=n: sink.counts["events_patched"] == n)
        finally:
            await sink.close()
        [event] = events_on(server)
        assert event["series"] == {"count": 3, "lastObservedTime": "2026-12-04T14:01:00.250000Z"}
        assert event["count"] == 3 and "eventTime" not in event


def _dict(event: OomEvent) -> dict[str, Any]:
    from parsers.events import event_to_dict

    return event_to_dict(event)


async def test_the_service_builds_it_as_a_side_sink_of_kafka(tmp_path: Path) -> None:
    """`sinks.enabled = ["kafka", "k8s_events"]`: FanOutSink with Kafka first (delivery, spool) and
    the Event sink fed copies; without a Kubernetes API the start-up error says what to change."""
    import contextlib
    import io

    from k8sfake.client import write_kubeconfig

    from streamer.commands.run import build_service
    from streamer.config import with_overrides
    from streamer.errors import SinkConfigError
    from streamer.sinks.fanout import FanOutSink
    from streamer.sinks.kafka import KafkaSink

    base: dict[str, object] = {
        "state.directory": str(tmp_path / "state"),
        "spool.directory": str(tmp_path / "spool"),
        "sinks.kafka.bootstrap_servers": "127.0.0.1:9",  # never contacted: nothing is started
        "sources.enabled": "kmsg",
        "node_name": "node-a",
        "sinks.enabled": "kafka,k8s_events",
        "sinks.k8s_events.burst_calls": 7,
    }
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9", "token")
    config = with_overrides(
        Config(), {**base, "kubernetes.mode": "kubeconfig", "kubernetes.kubeconfig_path": str(kubeconfig)}
    )
    async with contextlib.AsyncExitStack() as stack:
        service = await build_service(config, stack, io.StringIO())
        assert isinstance(service.sink, FanOutSink)
        assert isinstance(service.sink.primary, KafkaSink) and service.spool is not None
        [side] = service.sink.sides
        assert isinstance(side.sink, K8sEventSink)
        assert side.sink.bucket.burst == 7 and side.sink.instance == "oomstream-node-a"
    with pytest.raises(SinkConfigError, match=r"kubernetes.mode resolved to off.*remove k8s_events"):
        async with contextlib.AsyncExitStack() as stack:
            await build_service(
                with_overrides(Config(), {**base, "kubernetes.mode": "off"}), stack, io.StringIO()
            )
