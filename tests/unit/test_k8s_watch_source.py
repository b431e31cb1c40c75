"""KubeWatchSource against the fake API server over real HTTP on 127.0.0.1: Node Events and pod
statuses become signals exactly once, across watch resumes (dropped connections) and 410 relists;
the field selectors keep other nodes out; the pod cache is filled; aclose() ends signals()."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from k8sfake.client import plain_config, until
from k8sfake.objects import ContainerSpec, make_event, make_pod, terminated
from k8sfake.server import FakeApiServer

from parsers.events import EVENT_TYPE_K8S_OOM_KILLED, EVENT_TYPE_K8S_OOM_KILLING, K8sEvent
from parsers.k8s import SignalTracker
from streamer.enrich.pods import PodCache
from streamer.kube.api import KubeApi
from streamer.sources.k8s_watch import KubeWatchSource

NODE = "node-a"
PODS = "/api/v1/pods"
EVENTS = "/api/v1/events"
KILL_MESSAGE = (
    "Memory cgroup out of memory: Killed process 4242 (stress-ng) total-vm:1048576kB, anon-rss:131072kB, "
    "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:512kB oom_score_adj:999"
)
OLD_CID = "a1" * 32
NEW_CID = "b2" * 32


class Running:
    """A KubeWatchSource whose signals() is consumed by a background task into ``signals``."""

    def __init__(self, server: FakeApiServer, source: KubeWatchSource) -> None:
        self.server = server
        self.source = source
        self.signals: list[K8sEvent] = []
        self.task: asyncio.Task[None] | None = None

    async def _consume(self) -> None:
        async for signal in self.source.signals():
            self.signals.append(signal)

    def watcher(self, suffix: str) -> Any:
        return next(w for w in self.source.watchers if w.name.endswith(suffix))

    def of_type(self, event_type: str) -> list[K8sEvent]:
        return [s for s in self.signals if s.type == event_type]

    async def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        def check() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # surface a crash of the source
                raise AssertionError(f"signals() ended while waiting for {what}")
            return cond()

        await until(check, timeout, what)


@contextlib.asynccontextmanager
async def watching(tmp_path: Path, **source_kw: Any) -> AsyncIterator[Running]:
    # Long bookmark interval: no bookmark moves the client's resourceVersion behind the test's back.
    async with (
        FakeApiServer(bookmark_interval_seconds=60.0) as server,
        KubeApi(plain_config(tmp_path, server.url)) as api,
    ):
        source = KubeWatchSource(
            api,
            node=NODE,
            cache=PodCache(),
            tracker=SignalTracker(),
            watch_timeout_seconds=30.0,
            stall_timeout_seconds=20.0,
            **source_kw,
        )
        run = Running(server, source)
        run.task = asyncio.create_task(run._consume())
        try:
            await run.wait_for(
                lambda: (
                    all(w.synced.is_set() for w in source.watchers)
                    and server.open_watches == len(source.watchers)
                ),
                "first lists and watches",
            )
            yield run
        finally:
            await source.aclose()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(run.task, 5)


def lists(server: FakeApiServer, path: str) -> list[dict[str, str]]:
    return [r.query for r in server.requests if not r.watch and r.path == path]


def watches(server: FakeApiServer, path: str) -> list[dict[str, str]]:
    return [r.query for r in server.requests if r.watch and r.path == path]


def oom_pod(
    name: str, *, uid: str, node: str = NODE, old: str = OLD_CID, new: str = NEW_CID
) -> dict[str, Any]:
    """A pod whose container was OOM-killed once and restarted (lastState.terminated names the old id)."""
    return make_pod(
        name=name,
        uid=uid,
        node=node,
        containers=[
            ContainerSpec(
                name="app",
                container_id=new,
                restart_count=1,
                last_state=terminated("OOMKilled", container_id=old),
            )
        ],
    )


async def resume_after_drop(run: Running, path: str) -> None:
    """Drop every watch; wait until the watch of ``path`` is open again (resumed, not relisted)."""
    before = len(watches(run.server, path))
    lists_before = len(lists(run.server, path))
    run.server.drop_connections()
    await run.wait_for(
        lambda: (
            len(watches(run.server, path)) > before and run.server.open_watches == len(run.source.watchers)
        ),
        f"re-watch of {path}",
    )
    assert len(lists(run.server, path)) == lists_before, "a dropped connection resumes without a relist"


async def relist_after_410(run: Running, suffix: str) -> None:
    """Drop, move the store on (an unrelated change), compact: the resumed watch gets 410 -> relist."""
    w = run.watcher(suffix)
    relists = w.counts["relists_410"]
    run.server.drop_connections()
    run.server.upsert(make_pod(name="elsewhere-filler", node="node-z"))  # not seen by either watch
    run.server.compact()
    await run.wait_for(
        lambda: (
            w.counts["relists_410"] > relists
            and w.state == "watching"
            and run.server.open_watches == len(run.source.watchers)
        ),
        f"410 and relist of {suffix}",
        timeout=8.0,
    )


async def test_npd_event_occurrences_each_once_across_resume_and_relist(tmp_path: Path) -> None:
    async with watching(tmp_path) as run:
        server = run.server
        event = make_event(reason="OOMKilling", message=KILL_MESSAGE, involved_name=NODE, count=1)
        server.upsert(event)
        await run.wait_for(lambda: len(run.signals) == 1, "occurrence 1")

        repeated = copy.deepcopy(event)
        repeated["count"] = 3
        repeated["lastTimestamp"] = "2026-11-27T10:07:00Z"
        server.upsert(repeated)  # same namespace/name and uid, new resourceVersion
        await run.wait_for(lambda: len(run.signals) == 3, "occurrences 2 and 3")

        await resume_after_drop(run, EVENTS)
        await relist_after_410(run, ":events")
        relist = lists(server, EVENTS)[-1]
        assert "resourceVersion" not in relist, "a relist after 410 asks for the current state"

        # The relist showed the same object (count 3) again. A barrier on the same watch: anything the
        # relist or the resumes emitted is queued before this new Event's signal.
        barrier = make_event(reason="OOMKilling", message=KILL_MESSAGE.replace("4242", "5151"), count=1)
        server.upsert(barrier)
        await run.wait_for(lambda: any(s.pid == 5151 for s in run.signals), "barrier event")

        signals = [s for s in run.signals if s.pid != 5151]
        assert [s.occurrence for s in signals] == [1, 2, 3]
        assert len({s.event_id for s in signals}) == 3
        assert all(s.type == EVENT_TYPE_K8S_OOM_KILLING for s in signals)
        assert all(s.pid == 4242 and s.comm == "stress-ng" for s in signals)
        assert all(s.host == NODE for s in signals)
        assert {s.origin["uid"] for s in signals} == {event["metadata"]["uid"]}
        assert run.source.counts["signals"] == 4  # three occurrences + the barrier, nothing else
        events_watch = run.watcher(":events")
        assert events_watch.counts["relists_410"] == 1 and events_watch.counts["lists"] == 2


async def test_a_count_raised_while_history_was_lost_yields_only_the_missing_occurrence(
    tmp_path: Path,
) -> None:
    async with watching(tmp_path) as run:
        server = run.server
        event = make_event(reason="OOMKilling", message=KILL_MESSAGE, count=2)
        server.upsert(event)
        await run.wait_for(lambda: len(run.signals) == 2, "occurrences 1 and 2")
        w = run.watcher(":events")
        server.drop_connections()
        raised = copy.deepcopy(event)
        raised["count"] = 4
        server.upsert(raised)
        server.compact()  # the MODIFIED is gone from history: only the relist can show count 4
        await run.wait_for(lambda: w.counts["relists_410"] == 1 and len(run.signals) >= 4, "relist")
        await asyncio.sleep(0.1)
        assert [s.occurrence for s in run.signals] == [1, 2, 3, 4]
        assert len({s.event_id for s in run.signals}) == 4


async def test_a_count_in_the_thousands_is_covered_once_across_resume_and_relist(tmp_path: Path) -> None:
    """NPD's Event at count 1074 when the watch starts, then (while history is lost) at 3500,
    seen only through the 410 relist: emitted + declared occurrences cover 1..3500 exactly once."""
    async with watching(tmp_path) as run:
        server = run.server
        event = make_event(
            reason="OOMKilling", message=KILL_MESSAGE, involved_name=NODE, count=1074,
            first_timestamp="2026-11-27T09:02:11Z", last_timestamp="2026-11-27T10:04:58Z",
        )  # fmt: skip
        server.upsert(event)
        await run.wait_for(lambda: len(run.signals) == 100, "the newest 100 occurrences")
        await resume_after_drop(run, EVENTS)  # the resumed watch shows nothing new
        w = run.watcher(":events")
        server.drop_connections()
        raised = copy.deepcopy(event)
        raised["count"] = 3500
        raised["lastTimestamp"] = "2026-11-27T11:00:00Z"
        server.upsert(raised)
        server.compact()  # only the relist can show count 3500
        await run.wait_for(lambda: w.counts["relists_410"] == 1 and len(run.signals) >= 200, "relist")
        await asyncio.sleep(0.1)
        signals = run.signals
        assert [s.occurrence for s in signals] == [*range(975, 1075), *range(3401, 3501)]
        declared = {i: s.skipped_occurrences for i, s in enumerate(signals) if s.skipped_occurrences}
        assert declared == {0: {"first": 1, "last": 974}, 100: {"first": 1075, "last": 3400}}
        covered = [s.occurrence for s in signals] + [
            n for d in declared.values() for n in range(d["first"], d["last"] + 1)
        ]
        assert sorted(covered) == list(range(1, 3501))


async def test_events_about_other_nodes_are_not_watched(tmp_path: Path) -> None:
    async with watching(tmp_path) as run:
        server = run.server
        server.upsert(
            make_event(reason="OOMKilling", message=KILL_MESSAGE, involved_name="node-b", host="node-b")
        )
        server.upsert(make_event(reason="SystemOOM", message="System OOM encountered, victim process: x, pid: 7",
                                 involved_name="node-b", host="node-b"))  # fmt: skip
        mine = make_event(reason="OOMKilling", message=KILL_MESSAGE.replace("4242", "77"))
        server.upsert(mine)
        await run.wait_for(lambda: any(s.pid == 77 for s in run.signals), "this node's event")
        await asyncio.sleep(0.05)
        assert [(s.host, s.pid) for s in run.signals] == [(NODE, 77)]
        selectors = {q.get("fieldSelector") for q in lists(server, EVENTS) + watches(server, EVENTS)}
        assert selectors == {f"involvedObject.kind=Node,involvedObject.name={NODE}"}


async def test_pod_oomkilled_once_despite_updates_and_relist(tmp_path: Path) -> None:
    async with watching(tmp_path) as run:
        server = run.server
        uid = "0b1d2c3e-0000-4000-8000-000000000001"
        running = make_pod(
            name="web-1", uid=uid, containers=[ContainerSpec(name="app", container_id=OLD_CID)]
        )
        server.upsert(running)
        await run.wait_for(lambda: run.source.cache.get(uid) is not None, "pod in cache")
        assert run.signals == []

        # A pod of another node, with an OOMKilled status of its own: not ours (fieldSelector).
        other_uid = "0b1d2c3e-0000-4000-8000-0000000000ff"
        server.upsert(oom_pod("web-2", uid=other_uid, node="node-b", old="c3" * 32, new="d4" * 32))

        killed = oom_pod("web-1", uid=uid)
        server.upsert(killed)
        await run.wait_for(lambda: len(run.signals) == 1, "OOMKilled signal")
        signal = run.signals[0]
        assert signal.type == EVENT_TYPE_K8S_OOM_KILLED
        assert (signal.pod, signal.namespace, signal.pod_uid, signal.container) == (
            "web-1",
            "default",
            uid,
            "app",
        )
        assert signal.container_id == OLD_CID, "the killed container is lastState's, not the running one"
        assert signal.host == NODE and signal.details["exit_code"] == 137

        relabeled = copy.deepcopy(killed)
        relabeled["metadata"]["labels"]["rollout"] = "2"
        server.upsert(relabeled)
        await resume_after_drop(run, PODS)
        await relist_after_410(run, ":pods")

        # Barrier on the pod watch: another pod's kill, queued after whatever the updates produced.
        barrier_uid = "0b1d2c3e-0000-4000-8000-000000000002"
        server.upsert(oom_pod("web-3", uid=barrier_uid, old="e5" * 32, new="f6" * 32))
        await run.wait_for(lambda: any(s.pod_uid == barrier_uid for s in run.signals), "barrier pod")

        mine = [s for s in run.signals if s.pod_uid == uid]
        assert len(mine) == 1, [s.details for s in mine]
        assert {s.pod_uid for s in run.signals} == {uid, barrier_uid}
        assert run.watcher(":pods").counts["relists_410"] == 1

        cache = run.source.cache
        for cid in (OLD_CID, NEW_CID):
            match = cache.lookup(pod_uid=None, container_id=cid)
            assert match is not None and match.pod.uid == uid and match.pod.name == "web-1", cid
            assert match.container is not None and match.container.name == "app"
            assert not match.deleted
        assert cache.get(other_uid) is None
        assert cache.lookup(pod_uid=None, container_id="c3" * 32) is None
        assert {q.get("fieldSelector") for q in lists(server, PODS) + watches(server, PODS)} == {
            f"spec.nodeName={NODE}"
        }


async def test_aclose_ends_signals_promptly(tmp_path: Path) -> None:
    async with (
        FakeApiServer(bookmark_interval_seconds=60.0) as server,
        KubeApi(plain_config(tmp_path, server.url)) as api,
    ):
        source = KubeWatchSource(api, node=NODE, cache=PodCache(), tracker=SignalTracker())
        seen: list[K8sEvent] = []

        async def consume() -> None:
            async for signal in source.signals():
                seen.append(signal)

        task = asyncio.create_task(consume())
        await until(lambda: server.open_watches == 2, what="both watches open")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await source.aclose()
        await asyncio.wait_for(task, 2.0)
        assert loop.time() - started < 1.0
        assert seen == []
        # The watch tasks were cancelled with it and closed their connections: the server's next
        # write to each stream fails (aiohttp does not cancel a handler when its client goes away).
        server.upsert(make_pod(name="late"))
        server.upsert(make_event(reason="OOMKilling", message=KILL_MESSAGE))
        await until(lambda: server.open_watches == 0, what="watch streams closed")
        assert len([r for r in server.requests if r.watch]) == 2, "no re-watch after aclose()"
        assert all(w.state == "idle" for w in source.watchers)


async def test_node_check_names_a_node_the_api_does_not_know(tmp_path: Path) -> None:
    async with (
        FakeApiServer(bookmark_interval_seconds=60.0) as server,
        KubeApi(plain_config(tmp_path, server.url)) as api,
    ):
        source = KubeWatchSource(api, node=NODE, cache=PodCache(), tracker=SignalTracker())
        assert await source.check_node() is False
        assert source.counts["node_not_found"] == 1
        server.upsert({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})
        assert await source.check_node() is True
        assert source.counts["node_not_found"] == 1
