"""ListWatcher against the fake API server over real HTTP on 127.0.0.1: pagination, event order,
resume after a drop without relisting, bookmarks, 410 -> relist, stalls, token rotation, RBAC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from k8sfake.client import plain_config, until
from k8sfake.objects import make_event, make_events_k8s_io_event, make_pod
from k8sfake.server import FakeApiServer, TlsFiles, make_tls_files

from streamer.kube.api import KubeApi, KubeApiConfig, KubeApiError
from streamer.kube.listwatch import ListWatcher

PODS = "/api/v1/pods"


class Recorder:
    """A WatchHandler that keeps the state and every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.replaced: list[list[dict[str, Any]]] = []
        self.state: dict[tuple[str, str], dict[str, Any]] = {}

    @staticmethod
    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def replace(self, objects: list[dict[str, Any]], resource_version: str) -> None:
        self.replaced.append(objects)
        self.calls.append(("replace", resource_version, *sorted(o["metadata"]["name"] for o in objects)))
        self.state = {self.key(o): o for o in objects}

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        assert obj["kind"] and obj["apiVersion"]
        self.calls.append((event_type, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
        if event_type == "DELETED":
            self.state.pop(self.key(obj), None)
        else:
            self.state[self.key(obj)] = obj

    @property
    def applied(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] != "replace"]

    def names(self) -> set[str]:
        return {name for _, name in self.state}


def watcher(api: KubeApi, handler: Recorder, *, path: str = PODS, params: dict[str, str] | None = None,
            kind: str = "Pod", api_version: str = "v1", **kw: Any) -> ListWatcher:  # fmt: skip
    settings: dict[str, Any] = {
        "watch_timeout_seconds": 30.0,
        "stall_timeout_seconds": 3.0,
        "page_size": 500,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.5,
    } | kw
    return ListWatcher(api, path=path, params=params or {}, handler=handler, name="pods", kind=kind,
                       api_version=api_version, **settings)  # fmt: skip


@contextlib.asynccontextmanager
async def running(lw: ListWatcher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(lw.run())
    try:
        await until(lambda: lw.synced.is_set() or task.done(), what="first list")
        if task.done():
            task.result()
        yield task
        if task.done():
            task.result()  # surface an unexpected exit
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def fake(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[FakeApiServer, KubeApi]]:
    async with FakeApiServer(**kw) as server, KubeApi(plain_config(tmp_path, server.url)) as api:
        yield server, api


def lists(server: FakeApiServer, path: str = PODS) -> list[dict[str, str]]:
    return [r.query for r in server.requests if not r.watch and r.path == path]


def watches(server: FakeApiServer, path: str = PODS) -> list[dict[str, str]]:
    return [r.query for r in server.requests if r.watch and r.path == path]


async def test_initial_list_is_paginated_and_complete(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        for i in range(7):
            server.upsert(make_pod(name=f"web-{i}", namespace="ns1" if i % 2 else "ns2"))
        rec = Recorder()
        lw = watcher(api, rec, page_size=3)
        async with running(lw):
            assert rec.calls[0] == ("replace", server.resource_version, *sorted(f"web-{i}" for i in range(7)))
            assert all(o["kind"] == "Pod" and o["apiVersion"] == "v1" for o in rec.replaced[0])
            assert lw.resource_version == server.resource_version
            pages = lists(server)
            assert len(pages) == 3 and all(p["limit"] == "3" for p in pages)
            assert pages[0]["resourceVersion"] == "0" and "continue" not in pages[0]
            assert all("continue" in p and "resourceVersion" not in p for p in pages[1:])
            assert lw.counts["lists"] == 1
            await until(lambda: len(watches(server)) == 1, what="watch")
            w = watches(server)[0]
            assert w["resourceVersion"] == server.resource_version
            assert (
                w["allowWatchBookmarks"] == "true" and w["watch"] == "true" and int(w["timeoutSeconds"]) >= 30
            )


async def test_changes_reach_the_handler_in_order(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        rec = Recorder()
        lw = watcher(api, rec)
        async with running(lw):
            await until(lambda: server.open_watches == 1, what="watch open")
            pod = make_pod(name="api-1")
            rv1 = server.upsert(pod)
            pod["status"]["phase"] = "Failed"
            rv2 = server.upsert(pod)
            rv3 = server.delete(pod)
            rv4 = server.upsert(make_pod(name="api-2"))
            await until(lambda: len(rec.applied) == 4, what="4 events")
            assert rec.applied == [
                ("ADDED", "api-1", rv1),
                ("MODIFIED", "api-1", rv2),
                ("DELETED", "api-1", rv3),
                ("ADDED", "api-2", rv4),
            ]
            assert rec.names() == {"api-2"}
            assert lw.resource_version == rv4 and lw.counts["events"] == 4


async def test_resume_after_drop_without_relist_and_without_missing_changes(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        server.upsert(make_pod(name="a"))
        rec = Recorder()
        lw = watcher(api, rec, backoff_initial_seconds=0.3)
        async with running(lw):
            await until(lambda: server.open_watches == 1, what="watch open")
            server.upsert(make_pod(name="b"))
            await until(lambda: "b" in rec.names(), what="b")
            rv_before = lw.resource_version
            server.drop_connections()
            # Changes while the client is disconnected (it waits >= 0.3 s before re-watching).
            rv_c = server.upsert(make_pod(name="c"))
            rv_del = server.delete(("v1", "Pod", "default", "a"))
            await asyncio.sleep(0.1)
            rv_d = server.upsert(make_pod(name="d"))
            await until(lambda: rec.names() == {"b", "c", "d"}, what="changes made while disconnected")
            assert rec.applied[-3:] == [("ADDED", "c", rv_c), ("DELETED", "a", rv_del), ("ADDED", "d", rv_d)]
            assert len(lists(server)) == 1, "resumed without a relist"
            assert [w["resourceVersion"] for w in watches(server)][1] == rv_before
            assert lw.counts["errors_connection"] == 1 and lw.counts["relists_410"] == 0
            assert lw.counts["watch_restarts"] == 1


async def test_watch_timeout_rewatches_from_last_rv_without_relist(tmp_path: Path) -> None:
    # No bookmarks within a watch's lifetime: quiet watches that end normally are re-opened at once
    # (a growing backoff here would leave gaps without a watch).
    async with fake(tmp_path, bookmark_interval_seconds=100) as (server, api):
        rec = Recorder()
        lw = watcher(api, rec, watch_timeout_seconds=1, backoff_initial_seconds=0.5, backoff_max_seconds=5)
        async with running(lw):
            await until(
                lambda: len(watches(server)) >= 3, timeout=2.6, what="quiet watches re-opened at once"
            )
            rv = server.upsert(make_pod(name="x"))
            await until(lambda: ("ADDED", "x", rv) in rec.applied, what="event")
            n = len(watches(server))
            await until(lambda: len(watches(server)) > n, timeout=2, what="next watch")
            assert watches(server)[n]["resourceVersion"] == rv
            assert len(lists(server)) == 1 and lw.counts["lists"] == 1
            assert lw.counts["watch_restarts"] >= 2 and not any(k.startswith("errors_") for k in lw.counts)


async def test_bookmarks_advance_the_resource_version(tmp_path: Path) -> None:
    async with fake(tmp_path, bookmark_interval_seconds=0.1) as (server, api):
        rec = Recorder()
        lw = watcher(api, rec, params={"fieldSelector": "spec.nodeName=node-a"})
        async with running(lw):
            listed_rv = lw.resource_version
            for i in range(3):  # invisible to this watch
                server.upsert(make_pod(name=f"other-{i}", node="node-b"))
            await until(lambda: lw.resource_version == server.resource_version, what="bookmark")
            assert lw.resource_version != listed_rv and lw.counts["bookmarks"] >= 1
            assert rec.applied == []
            # Thanks to the bookmark, losing the history does not force a relist.
            server.compact()
            server.drop_connections()
            await until(lambda: len(watches(server)) == 2 and server.open_watches == 1, what="re-watch")
            rv = server.upsert(make_pod(name="mine", node="node-a"))
            await until(lambda: ("ADDED", "mine", rv) in rec.applied, what="event after re-watch")
            assert lw.counts["relists_410"] == 0 and len(lists(server)) == 1


@pytest.mark.parametrize("gone_as_http_status", [False, True], ids=["in-stream-ERROR", "http-410"])
async def test_compacted_history_gives_410_and_relist_with_current_state(
    tmp_path: Path, gone_as_http_status: bool
) -> None:
    async with fake(tmp_path, gone_as_http_status=gone_as_http_status) as (server, api):
        server.upsert(make_pod(name="a"))
        server.upsert(make_pod(name="b"))
        rec = Recorder()
        lw = watcher(api, rec, backoff_initial_seconds=0.2)
        async with running(lw):
            await until(lambda: server.open_watches == 1, what="watch open")
            server.drop_connections()
            server.upsert(make_pod(name="c"))
            server.delete(("v1", "Pod", "default", "a"))
            server.compact()
            await until(lambda: len(rec.replaced) == 2, what="relist")
            assert rec.calls[-1] == ("replace", server.resource_version, "b", "c")
            assert rec.names() == {"b", "c"}
            assert lw.counts["relists_410"] == 1 and lw.counts["errors_gone"] == 1
            relist = lists(server)[-1]
            assert "resourceVersion" not in relist, "a relist after 410 asks for the most recent state"
            await until(lambda: len(watches(server)) == 3, what="watch after relist")
            assert watches(server)[-1]["resourceVersion"] == server.resource_version
            rv = server.upsert(make_pod(name="e"))
            await until(lambda: ("ADDED", "e", rv) in rec.applied, what="event after relist")


async def test_stalled_watch_is_reconnected_and_bookmarks_keep_a_healthy_one(tmp_path: Path) -> None:
    async with fake(tmp_path, bookmark_interval_seconds=0.1) as (server, api):
        rec = Recorder()
        lw = watcher(api, rec, stall_timeout_seconds=0.4)
        async with running(lw):
            await asyncio.sleep(1.0)  # quiet but healthy: bookmarks every 0.1 s
            assert lw.counts["stalls"] == 0 and len(watches(server)) == 1
            server.stall_watches(10)
            rv = server.upsert(make_pod(name="late"))
            await until(lambda: ("ADDED", "late", rv) in rec.applied, timeout=3, what="event via a new watch")
            assert lw.counts["stalls"] == 1 and lw.counts["errors_stalled"] == 1
            assert len(watches(server)) == 2 and len(lists(server)) == 1


async def test_token_rotation_in_cluster_tls_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls: TlsFiles = make_tls_files(tmp_path)
    async with FakeApiServer(
        token="old", ssl_context=tls.server_context(), bookmark_interval_seconds=0.2
    ) as server:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", server.url.rsplit(":", 1)[1])
        token = tmp_path / "token"
        token.write_text("old")
        cfg = KubeApiConfig(mode="in_cluster", token_path=str(token), ca_path=str(tls.ca_cert))
        async with KubeApi(cfg) as api:
            rec = Recorder()
            lw = watcher(api, rec)
            async with running(lw):
                await until(lambda: server.open_watches == 1, what="watch open")
                server.rotate_token("new")
                token.write_text("new")
                server.drop_connections()
                rv = server.upsert(make_pod(name="after-rotation"))
                await until(
                    lambda: ("ADDED", "after-rotation", rv) in rec.applied, what="event after rotation"
                )
                assert lw.counts["auth_refreshes"] == 1
                assert [r.status for r in server.requests if r.watch] == [200, 401, 200]
                assert len(lists(server)) == 1


async def test_forbidden_is_fatal_with_a_clear_message(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        server.forbid("list", "pods")
        lw = watcher(api, Recorder(), params={"fieldSelector": "spec.nodeName=node-a"})
        with pytest.raises(KubeApiError, match=r"verb 'list' on resource 'pods'.*cluster-wide") as ei:
            await asyncio.wait_for(lw.run(), 5)
        assert ei.value.status == 403 and not lw.synced.is_set() and lw.state == "failed"
        assert lw.counts["errors_forbidden"] == 1 and len(lists(server)) == 1  # no retry storm

        server.allow("list", "pods")
        server.forbid("watch", "pods")
        lw = watcher(api, Recorder())
        with pytest.raises(KubeApiError, match=r"verb 'watch' on resource 'pods'"):
            await asyncio.wait_for(lw.run(), 5)
        assert lw.synced.is_set()


async def test_field_selector_limits_pods_to_the_node(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        server.upsert(make_pod(name="here-1", node="node-a"))
        server.upsert(make_pod(name="there-1", node="node-b"))
        rec = Recorder()
        lw = watcher(api, rec, params={"fieldSelector": "spec.nodeName=node-a"})
        async with running(lw):
            assert rec.names() == {"here-1"}
            await until(lambda: server.open_watches == 1, what="watch open")
            server.upsert(make_pod(name="there-2", node="node-b"))
            rv = server.upsert(make_pod(name="here-2", node="node-a"))
            await until(lambda: "here-2" in rec.names(), what="here-2")
            assert rec.applied == [("ADDED", "here-2", rv)]
            assert all(q["fieldSelector"] == "spec.nodeName=node-a" for q in lists(server) + watches(server))


async def test_events_selectors_both_event_apis(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        server.upsert(make_event(reason="OOMKilling", message="Killed process 1", namespace="default"))
        server.upsert(make_event(reason="Started", message="started", namespace="default"))
        server.upsert(make_events_k8s_io_event(reason="OOMKilling", note="Killed process 2"))
        core, new = Recorder(), Recorder()
        lw_core = watcher(api, core, path="/api/v1/events", kind="Event",
                          params={"fieldSelector": "involvedObject.kind=Node,reason=OOMKilling"})  # fmt: skip
        lw_new = watcher(api, new, path="/apis/events.k8s.io/v1/events", kind="Event", api_version="events.k8s.io/v1",
                         params={"fieldSelector": "regarding.kind=Node,reason=OOMKilling"})  # fmt: skip
        async with running(lw_core), running(lw_new):
            assert [o["message"] for o in core.replaced[0]] == ["Killed process 1"]
            assert [o["note"] for o in new.replaced[0]] == ["Killed process 2"]
            assert new.replaced[0][0]["apiVersion"] == "events.k8s.io/v1"
            await until(lambda: server.open_watches == 2, what="watches open")
            server.upsert(make_event(reason="OOMKilling", message="Killed process 3"))
            await until(lambda: len(core.applied) == 1, what="core event")
            assert new.applied == []


async def test_garbage_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        rec = Recorder()
        lw = watcher(api, rec)
        async with running(lw):
            await until(lambda: server.open_watches == 1, what="watch open")
            server.send_raw_line(b"this is not json {")
            server.send_raw_line(b'{"type":"SURPRISE","object":{}}')
            server.send_raw_line(b"[1,2,3]")
            rv = server.upsert(make_pod(name="after-garbage"))
            await until(lambda: ("ADDED", "after-garbage", rv) in rec.applied, what="event after garbage")
            assert lw.counts["errors_decode"] == 3
            assert len(watches(server)) == 1, "garbage does not break the watch"


async def test_retriable_errors_back_off_and_recover(tmp_path: Path) -> None:
    async with fake(tmp_path) as (server, api):
        server.upsert(make_pod(name="a"))
        server.inject_errors(503, count=3, watch=False)
        server.inject_errors(429, count=1, watch=True)
        rec = Recorder()
        lw = watcher(api, rec)
        async with running(lw):
            assert rec.names() == {"a"}
            assert lw.counts["errors_server"] == 3
            await until(lambda: server.open_watches == 1, what="watch open")
            assert lw.counts["errors_throttled"] == 1
            assert [r.status for r in server.requests] == [503, 503, 503, 200, 429, 200]


async def test_non_retriable_errors_propagate_retriable_ones_do_not(tmp_path: Path) -> None:
    async with fake(tmp_path) as (_server, api):
        lw = watcher(api, Recorder(), path="/api/v1/nosuchthings")
        with pytest.raises(KubeApiError) as ei:
            await asyncio.wait_for(lw.run(), 5)
        assert ei.value.status == 404
        # An unreachable server is retried forever (until cancelled).
    async with KubeApi(plain_config(tmp_path, "http://127.0.0.1:9")) as api:
        lw = watcher(api, Recorder())
        task = asyncio.create_task(lw.run())
        await until(lambda: lw.counts["errors_connection"] >= 3, what="retries")
        assert not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
