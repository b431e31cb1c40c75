"""The Kubernetes API as a source: this node's pods (the enrichment cache and pod-status signals)
and the Events about this node, each through one list+watch.

API load per node: one pod watch with ``fieldSelector=spec.nodeName=<node>`` and one Events watch
with the configured field selector (default: Events whose involvedObject is this Node), each
resumed from its last resourceVersion (bookmarks keep it fresh) and relisted only on 410 Gone.

Every pod object goes to the ``PodCache`` first and then to the ``SignalTracker``, so a pod-status
``OOMKilled`` signal always finds its pod when it is enriched. Acknowledgements need no input
position here: after a restart the relist shows the same objects again, the tracker gives them
the same event ids, and the pipeline's signal ledger drops the ones already published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from parsers.events import K8sEvent, Source
from parsers.k8s import SignalTracker
from parsers.telemetry import Count, Tally, Telemetry
from streamer.enrich.pods import PodCache
from streamer.kube.api import KubeApi, KubeApiError
from streamer.kube.listwatch import LIST_WATCH_TELEMETRY, ListWatcher
from streamer.sources.base import SOURCE_TELEMETRY

KUBE_WATCH_TELEMETRY = (
    SOURCE_TELEMETRY
    + LIST_WATCH_TELEMETRY
    + Telemetry(
        "kube_watch",
        (
            Count("signals", "signals the tracker made of watched objects"),
            Count("node_not_found", "node checks that found no such node"),
            Count("node_check_failed", "node checks that failed"),
            Count("tombstones_expired", "deleted pods forgotten after tombstone_seconds"),
        ),
    )
)

log = logging.getLogger("oomstream.sources.k8s_watch")

TOMBSTONE_SWEEP_SECONDS = 30.0


class _PodHandler:
    """Pods: the cache first (enrichment), then the tracker (OOMKilled / Evicted transitions)."""

    def __init__(
        self,
        cache: PodCache,
        tracker: SignalTracker | None,
        node: str,
        emit: Callable[[list[K8sEvent]], None],
    ) -> None:
        self.cache = cache
        self.tracker = tracker
        self.node = node
        self.emit = emit
        self.resource_version: str | None = None

    def _source(self) -> Source:
        return Source("k8s_watch", "k8s_api", {"resource": "pods", "resource_version": self.resource_version})

    def replace(self, objects: list[dict[str, Any]], resource_version: str) -> None:
        self.resource_version = resource_version
        self.cache.replace(objects, resource_version)
        if self.tracker is not None:
            for pod in objects:
                self.emit(self.tracker.from_pod(pod, source=self._source(), node=self.node))

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        self.resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or "") or None
        self.cache.apply(event_type, obj)
        if self.tracker is not None:
            self.emit(self.tracker.from_pod(obj, source=self._source(), node=self.node))


class _EventHandler:
    """Events about this node: each new occurrence of a memory-related reason is a signal."""

    def __init__(self, tracker: SignalTracker, emit: Callable[[list[K8sEvent]], None]) -> None:
        self.tracker = tracker
        self.emit = emit

    def _source(self, resource_version: str | None) -> Source:
        return Source("k8s_watch", "k8s_api", {"resource": "events", "resource_version": resource_version})

    def replace(self, objects: list[dict[str, Any]], resource_version: str) -> None:
        for obj in objects:
            self.emit(self.tracker.from_event_object(obj, source=self._source(resource_version)))

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "DELETED":
            return  # an Event expiring (its TTL) says nothing new
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "") or None
        self.emit(self.tracker.from_event_object(obj, source=self._source(version)))


class KubeWatchSource:
    """A SignalSource over the API server; also keeps ``cache`` filled for the enricher."""

    def __init__(
        self,
        api: KubeApi,
        *,
        node: str,
        cache: PodCache,
        tracker: SignalTracker,
        pod_signals: bool = True,
        watch_events: bool = True,
        events_field_selector: str = "involvedObject.kind=Node,involvedObject.name={node}",
        watch_timeout_seconds: float = 300.0,
        stall_timeout_seconds: float = 90.0,
        name: str = "k8s-watch",
    ) -> None:
        self.name = name
        self.endless = True
        self.node = node
        self.counts: Tally = KUBE_WATCH_TELEMETRY.tally()
        self.cache = cache
        self._api = api
        self._queue: asyncio.Queue[K8sEvent | None] = asyncio.Queue()
        self._closed = asyncio.Event()
        self.watchers: list[ListWatcher] = [
            ListWatcher(
                api,
                path="/api/v1/pods",
                params={"fieldSelector": f"spec.nodeName={node}"},
                handler=_PodHandler(cache, tracker if pod_signals else None, node, self._emit),
                name=f"{name}:pods",
                kind="Pod",
                api_version="v1",
                watch_timeout_seconds=watch_timeout_seconds,
                stall_timeout_seconds=stall_timeout_seconds,
            )
        ]
        if watch_events:
            self.watchers.append(
                ListWatcher(
                    api,
                    path="/api/v1/events",
                    params={"fieldSelector": events_field_selector.replace("{node}", node)},
                    handler=_EventHandler(tracker, self._emit),
                    name=f"{name}:events",
                    kind="Event",
                    api_version="v1",
                    watch_timeout_seconds=watch_timeout_seconds,
                    stall_timeout_seconds=stall_timeout_seconds,
                )
            )

    @property
    def pods_synced(self) -> bool:
        return self.watchers[0].synced.is_set()

    def _emit(self, signals: list[K8sEvent]) -> None:
        for signal in signals:
            self.counts["signals"] += 1
            self._queue.put_nowait(signal)

    async def check_node(self) -> bool:
        """Is ``node`` a Node the API knows? A wrong NODE_NAME would silently match no pods."""
        try:
            await self._api.get_json(f"/api/v1/nodes/{self.node}", {})
        except KubeApiError as error:
            if error.status == 404:
                self.counts["node_not_found"] += 1
                log.error(
                    "kubernetes: node %r does not exist: no pod of it will be seen (set node_name or "
                    "NODE_NAME to spec.nodeName through the downward API)",
                    self.node,
                )
                return False
            self.counts["node_check_failed"] += 1
            log.warning("kubernetes: cannot read node %r (%s); going on", self.node, error)
            return False
        return True

    async def signals(self) -> AsyncIterator[K8sEvent]:
        await self.check_node()
        tasks = [asyncio.create_task(w.run(), name=f"watch:{w.name}") for w in self.watchers]
        tasks.append(asyncio.create_task(self._sweep_tombstones(), name=f"{self.name}:tombstones"))
        closer = asyncio.create_task(self._close_queue_on_close())
        try:
            while True:
                signal = await self._queue.get()
                if signal is None:
                    return
                yield signal
        finally:
            for task in (*tasks, closer):
                task.cancel()
            for task in (*tasks, closer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _close_queue_on_close(self) -> None:
        await self._closed.wait()
        self._queue.put_nowait(None)

    async def _sweep_tombstones(self) -> None:
        while True:
            await asyncio.sleep(TOMBSTONE_SWEEP_SECONDS)
            expired = self.cache.expire()
            if expired:
                self.counts["tombstones_expired"] += expired

    def acknowledged(self, event: K8sEvent) -> None:
        """Nothing to commit: a relist re-derives signals, and the ledger drops repeats."""

    async def aclose(self) -> None:
        self._closed.set()
