"""A core/v1 Event on the Pod for every kernel OOM kill in it (off by default).

Kubernetes itself records no per-pod Event when the kernel kills a container's process
(kubernetes/kubernetes#69676, open since 2018): ``kubectl describe pod`` shows only ``BackOff``.
This sink observes the kills oomstream has published and posts, for each one attributed to a pod,
an Event with ``involvedObject`` the Pod (UID, ``fieldPath: spec.containers{NAME}``), type Warning,
reason ``OomstreamKernelOOMKill`` (prefixed with our name, so no kubelet reason can ever be the
same), ``source.component: oomstream`` and ``reportingComponent``/``reportingInstance`` set.

Like client-go's EventCorrelator (tools/record/events_cache.go), it bounds what reaches the API
server: kills of one container within ``repeat_window_seconds`` update the existing Event (count,
lastTimestamp, message) with a PATCH instead of creating new ones, and every API call takes a
token from this node's bucket (``burst_calls`` tokens, one more each ``refill_seconds``; client-go:
25, then 1 per 5 minutes). Kills that find the bucket empty are aggregated per container and
sent as one update, count included, when a token is back, so an OOM storm costs at most ``burst_calls``
calls and then one call per refill, and no kill is missing from the counts.

It never blocks or fails delivery: ``observe`` only queues (a full queue drops and counts), the
Events are posted by a task of their own, and every API failure is logged and counted. A 403
says which RBAC rule is missing (``create``/``patch`` on ``events``, added to the manifests only
when this sink is enabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from parsers.events import AnyEvent, OomEvent

if TYPE_CHECKING:  # the API client (kubernetes_asyncio) loads only when the sink runs
    from streamer.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

REASON = "OomstreamKernelOOMKill"
COMPONENT = "oomstream"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
RETRY_SECONDS = 5.0
FORBIDDEN_LOG_INTERVAL_SECONDS = 60.0
MAX_TRACKED = 4096  # containers remembered for repeats (oldest forgotten first)


def _help(text: str) -> dict[str, Any]:
    # The same metadata shape as streamer/config.py's options (flags, env names, help are generated).
    return {"help": text, "csv": False}


@dataclass(frozen=True, slots=True)
class K8sEventsOptions:
    """``[k8s_events]``: a Kubernetes Event on the pod for each kernel OOM kill."""

    SECTION: ClassVar[str] = "k8s_events"

    enabled: bool = field(
        default=False,
        metadata=_help(
            "post a core/v1 Event on the pod for each kernel OOM kill (needs RBAC create/patch events)"
        ),
    )
    repeat_window_seconds: float = field(
        default=600.0,
        metadata=_help(
            "kills of one container within this long update its Event's count instead of a new Event"
        ),
    )
    burst_calls: int = field(
        default=25, metadata=_help("API calls this node may make at once before kills are aggregated")
    )
    refill_seconds: float = field(
        default=300.0, metadata=_help("after the burst, one more API call each this many seconds")
    )
    queue_events: int = field(
        default=10000, metadata=_help("kills waiting to be posted; past that they are dropped and counted")
    )
    reporting_instance: str | None = field(
        default=None, metadata=_help("reportingInstance of the Events; unset: oomstream-<node name>")
    )

    def __post_init__(self) -> None:
        from streamer.config import ConfigError

        for key in ("repeat_window_seconds", "refill_seconds"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{self.SECTION}.{key}: must be > 0", key=f"{self.SECTION}.{key}")
        for key in ("burst_calls", "queue_events"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{self.SECTION}.{key}: must be >= 1", key=f"{self.SECTION}.{key}")


def _quantity(value: int | None) -> str:
    """Bytes the way Kubernetes writes memory (512Mi, 1Gi, 1536Ki)."""
    if value is None:
        return "?"
    for suffix, scale in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if value >= scale:
            amount = value / scale
            whole = amount == int(amount) or amount >= 100
            return f"{amount:.0f}{suffix}" if whole else f"{amount:.1f}{suffix}"
    return str(value)


LIMIT_WORDS = {
    "container_limit": "at the container limit",
    "pod_limit": "at the pod limit",
    "node_allocatable": "at the node's allocatable memory limit",
    "node": "with the whole node out of memory",
    "cgroup_limit": "at a cgroup limit",
}


def kill_message(event: OomEvent) -> str:
    """ "process java (pid 4242) in container web killed by the kernel OOM killer at the container
    limit 512Mi; RSS 511Mi (99.8%); trigger java"."""
    kube = event.kubernetes or {}
    victim = event.victim
    analysis = event.analysis or {}
    who = f"process {victim.comm or '?'} (pid {victim.pid})" if victim is not None else "a process"
    container = kube.get("container")
    where = f" in container {container}" if container else ""
    limit = LIMIT_WORDS.get(str(analysis.get("limit_fired")), "")
    limit_bytes = analysis.get("limit_bytes")
    if limit and isinstance(limit_bytes, int) and analysis.get("limit_fired") != "node":
        limit = f"{limit} {_quantity(limit_bytes)}"
    text = f"{who}{where} killed by the kernel OOM killer" + (f" {limit}" if limit else "")
    rss = analysis.get("rss_bytes")
    if isinstance(rss, int):
        fraction = analysis.get("rss_fraction_of_limit")
        text += f"; RSS {_quantity(rss)}"
        if isinstance(fraction, int | float):
            text += f" ({fraction * 100:.1f}%)"
    if event.trigger is not None and event.trigger.comm:
        text += f"; trigger {event.trigger.comm}"
    return text


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Tracked:
    """One container's Event: what the API server holds, and kills not sent yet."""

    namespace: str
    pod: str
    pod_uid: str | None
    container: str | None
    name: str | None = None  # the Event's name once created
    count: int = 0  # the count the API server holds
    first_wall: float = 0.0
    last_sent_mono: float = 0.0  # when the server's copy was last written (monotonic)
    pending: int = 0  # kills not sent yet
    pending_message: str = ""
    pending_wall: float = 0.0
    aggregated: bool = False  # some of the pending kills waited for a token


@dataclass
class TokenBucket:
    burst: int
    refill_seconds: float
    clock: Callable[[], float]
    tokens: float = 0.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed / self.refill_seconds)
        self.updated = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def seconds_until_token(self) -> float:
        self._refill()
        return max(0.0, (1.0 - self.tokens) * self.refill_seconds)


class K8sEventSink:
    """``observe(event)`` after each publish; ``async with`` runs the posting task."""

    def __init__(
        self,
        options: K8sEventsOptions,
        api: KubeApi,
        node: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.api = api
        self.node = node
        self.instance = options.reporting_instance or f"oomstream-{node}"
        self.clock = clock
        self.wall_clock = wall_clock
        self.bucket = TokenBucket(options.burst_calls, options.refill_seconds, clock)
        self.counts: Counter[str] = Counter()
        self._queue: asyncio.Queue[OomEvent] = asyncio.Queue(options.queue_events)
        self._tracked: OrderedDict[tuple[str, str, str], _Tracked] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_forbidden_log = -FORBIDDEN_LOG_INTERVAL_SECONDS
        self._retry_at = 0.0

    # -- the pipeline's side: never blocks ----------------------------------------------------------

    def observe(self, event: AnyEvent) -> None:
        if not isinstance(event, OomEvent):
            return
        kube = event.kubernetes or {}
        if not kube.get("namespace") or not kube.get("pod"):
            self.counts["skipped_not_in_a_pod"] += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.counts["dropped_queue_full"] += 1
            return
        self._wakeup.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> K8sEventSink:
        self._task = asyncio.create_task(self._run(), name="k8s-events")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, flush_seconds: float = 2.0) -> None:
        """Post what the bucket allows within ``flush_seconds``, then stop; the rest is counted."""
        if self._task is None:
            return
        deadline = time.monotonic() + flush_seconds  # real time: shutdown is, whatever the bucket's clock
        while (not self._queue.empty() or self._sendable()) and time.monotonic() < deadline:
            self._wakeup.set()
            await asyncio.sleep(0.02)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left = sum(t.pending for t in self._tracked.values())
        if left:
            self.counts["unsent_at_shutdown"] += left
            log.info("kubernetes events: %d kill(s) not posted at shutdown (rate bound)", left)

    def _sendable(self) -> bool:
        return any(t.pending for t in self._tracked.values()) and self.bucket.tokens >= 1.0

    # -- the posting task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._queue.empty():
                self._track(self._queue.get_nowait())
            await self._send_pending()
            self._wakeup.clear()
            if not self._queue.empty():
                continue
            wait = None
            if any(t.pending for t in self._tracked.values()):
                wait = max(self.bucket.seconds_until_token(), self._retry_at - self.clock(), 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def _track(self, event: OomEvent) -> None:
        kube = event.kubernetes or {}
        key = (str(kube["namespace"]), str(kube["pod"]), str(kube.get("container") or ""))
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = _Tracked(key[0], key[1], kube.get("pod_uid"), kube.get("container"))
            self._tracked[key] = tracked
            while len(self._tracked) > MAX_TRACKED:
                oldest_key, oldest = next(iter(self._tracked.items()))
                if oldest.pending:
                    break
                del self._tracked[oldest_key]
        else:
            self._tracked.move_to_end(key)
        tracked.pending += 1
        tracked.pending_message = kill_message(event)
        tracked.pending_wall = _event_wall_time(event) or self.wall_clock()
        self.counts["kills_observed"] += 1

    async def _send_pending(self) -> None:
        from streamer.kube.api import KubeApiError

        if self.clock() < self._retry_at:
            return
        for tracked in [t for t in self._tracked.values() if t.pending]:
            if not self.bucket.take():
                for waiting in self._tracked.values():
                    if waiting.pending and not waiting.aggregated:
                        waiting.aggregated = True
                self.counts["rate_limited"] += 1
                return
            try:
                await self._post(tracked)
            except KubeApiError as error:
                self._failed(tracked, error)
                if error.retriable:
                    self._retry_at = self.clock() + (error.retry_after or RETRY_SECONDS)
                    return

    async def _post(self, tracked: _Tracked) -> None:
        sending = tracked.pending
        message = tracked.pending_message
        if tracked.aggregated and sending > 1:
            message = f"(combined from similar events): {message}"
        now = self.clock()
        window = self.options.repeat_window_seconds
        repeat = tracked.name is not None and now - tracked.last_sent_mono <= window
        if repeat:
            assert tracked.name is not None
            patch = {
                "count": tracked.count + sending,
                "lastTimestamp": _rfc3339(tracked.pending_wall),
                "message": message,
            }
            path = f"/api/v1/namespaces/{tracked.namespace}/events/{tracked.name}"
            from streamer.kube.api import KubeApiError

            try:
                stored = await self.api.write_json("PATCH", path, patch, content_type=STRATEGIC_MERGE_PATCH)
            except KubeApiError as error:
                if error.status != 404:
                    raise
                # The Event expired (the API server's event TTL) or was deleted: start a new one.
                tracked.name = None
                self.counts["patch_not_found"] += 1
                return await self._post(tracked)
            self.counts["events_patched"] += 1
        else:
            body = self._event_body(tracked, message, sending)
            stored = await self.api.write_json("POST", f"/api/v1/namespaces/{tracked.namespace}/events", body)
            tracked.name = str(body["metadata"]["name"])
            tracked.count = 0
            tracked.first_wall = tracked.pending_wall
            self.counts["events_created"] += 1
        tracked.count = int(stored.get("count") or tracked.count + sending)
        tracked.last_sent_mono = now
        tracked.pending -= sending
        tracked.aggregated = False
        if sending > 1:
            self.counts["kills_aggregated"] += sending - 1
        self.counts["kills_posted"] += sending

    def _event_body(self, tracked: _Tracked, message: str, count: int) -> dict[str, Any]:
        stamp = _rfc3339(tracked.pending_wall)
        involved: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": tracked.namespace,
            "name": tracked.pod,
        }
        if tracked.pod_uid:
            involved["uid"] = tracked.pod_uid
        if tracked.container:
            involved["fieldPath"] = f"spec.containers{{{tracked.container}}}"
        # client-go names Events "<object>.<hex unix nanoseconds>"
        name = f"{tracked.pod}.{time.time_ns():x}"
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": tracked.namespace},
            "involvedObject": involved,
            "reason": REASON,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT, "host": self.node},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": count,
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "action": "OOMKill",
        }

    def _failed(self, tracked: _Tracked, error: KubeApiError) -> None:
        self.counts[f"errors_{error.status or error.reason or 'other'}"] += 1
        if error.status == 403:
            now = self.clock()
            if now - self._last_forbidden_log >= FORBIDDEN_LOG_INTERVAL_SECONDS:
                self._last_forbidden_log = now
                log.error(
                    "kubernetes events: %s. The Event sink needs RBAC verbs create and patch on "
                    "events (core API group) in the pod's namespace: deploy with the k8s_events "
                    "RBAC rule enabled, or set k8s_events.enabled = false",
                    error,
                )
            # RBAC may be fixed later; these kills are dropped (counted), the next ones try again.
            self.counts["kills_dropped_forbidden"] += tracked.pending
            tracked.pending = 0
            tracked.aggregated = False
        elif error.retriable:
            log.warning("kubernetes events: %s; retrying in a few seconds", error)
        else:
            log.error("kubernetes events: %s; %d kill(s) not posted", error, tracked.pending)
            self.counts["kills_dropped_rejected"] += tracked.pending
            tracked.pending = 0
            tracked.aggregated = False


def _event_wall_time(event: OomEvent) -> float | None:
    if not event.time:
        return None
    try:
        return datetime.fromisoformat(event.time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def build(options: K8sEventsOptions, context: Mapping[str, Any]) -> K8sEventSink | None:
    """Registry entry: the sink when enabled (``context``: ``api`` a KubeApi, ``node`` the node name)."""
    if not options.enabled:
        return None
    return K8sEventSink(options, context["api"], str(context["node"]))
