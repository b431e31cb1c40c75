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

A repeat sets both the legacy ``count`` and ``series`` (``count`` at least 2,
``lastObservedTime``), as the events.k8s.io/v1 recorder (client-go tools/events) does for an
isomorphic Event, so readers of either API see the repetition. These are core/v1 Events
(``firstTimestamp``/``lastTimestamp``/``count``, what ``kubectl describe pod`` reads), written
through the core/v1 API, whose validation (pkg/apis/core/validation/events.go) lets every field
of them be updated; ``eventTime`` stays unset, as for every legacy Event.

It is a side sink (``[sinks] enabled = ["kafka", "k8s_events"]``): FanOutSink hands it copies
through a queue of its own, so it never blocks or fails delivery. ``submit`` only queues (a full
queue drops and counts), the Events are posted by a task of its own, and every API failure is
logged and counted; each copy gets one DeliveryResult (ACKED once posted or when there is nothing
to post, FAILED when dropped). A copy seen twice (the spool resends an event that failed on the
first sink) is posted once. A 403 says which RBAC rule is missing (``create``/``patch`` on
``events``, added to the manifests only when this sink is enabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from parsers.events import AnyEvent, OomEvent
from parsers.telemetry import Count, Tally, Telemetry
from streamer.config import ConfigError, OptionError, option_help
from streamer.registry import BuildContext, Component
from streamer.sinks.base import (
    DeadLetter,
    DeliveryCallback,
    DeliveryResult,
    DeliveryStatus,
    Sink,
    SinkConfigError,
)

if TYPE_CHECKING:  # the API client (kubernetes_asyncio, aiohttp) loads only when the sink runs
    from prometheus_client import CollectorRegistry

    from streamer.kube.api import KubeApi, KubeApiError

log = logging.getLogger(__name__)

REASON = "OomstreamKernelOOMKill"
REPORTER = "oomstream"  # source.component, reportingComponent
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
RETRY_SECONDS = 5.0
FORBIDDEN_LOG_INTERVAL_SECONDS = 60.0
MAX_TRACKED = 4096  # containers remembered for repeats (oldest forgotten first)
# Event ids remembered to post a resent copy once (at least twice queue_events): a copy the spool
# resends after more than that many newer events is posted again (one count too many, bounded memory).
MAX_SEEN_EVENT_IDS = 10_000
CLOSE_FLUSH_SECONDS = 2.0

K8S_EVENTS_TELEMETRY = Telemetry(
    "k8s_events",
    (
        Count("kills_observed", "kernel kills in a pod taken for posting"),
        Count("kills_posted", "kills counted in an Event the API server stored"),
        Count("kills_aggregated", "kills posted in one call with others of their container (rate bound)"),
        Count("events_created", "Events created (POST)"),
        Count("events_patched", "Events updated for a repeat (PATCH: count, series, message)"),
        Count("patch_not_found", "repeats whose Event had expired or was deleted: a new one was created"),
        Count("rate_limited", "times the node's token bucket was empty and kills waited"),
        Count("skipped_not_in_a_pod", "kernel kills not attributed to a pod: nothing to post"),
        Count("duplicates", "copies of an event already taken (resent from the spool): not posted again"),
        Count("dropped_queue_full", "kills dropped: queue_events kills were already waiting"),
        Count("kills_dropped_forbidden", "kills not posted: RBAC forbids creating or patching events"),
        Count("kills_dropped_rejected", "kills not posted: the API server refused the Event"),
        Count("unsent_at_shutdown", "kills still waiting for a token at shutdown"),
        Count("errors_{}", "failed API calls, by HTTP status or reason"),
    ),
)


@dataclass(frozen=True, slots=True)
class K8sEventsOptions:
    """``[sinks.k8s_events]``: a Kubernetes Event on the pod for each kernel OOM kill. Enabled as a
    side sink: ``[sinks] enabled = ["kafka", "k8s_events"]`` (needs RBAC create/patch on events)."""

    repeat_window_seconds: float = field(
        default=600.0,
        metadata=option_help(
            "kills of one container within this long update its Event's count instead of a new Event"
        ),
    )
    burst_calls: int = field(
        default=25, metadata=option_help("API calls this node may make at once before kills are aggregated")
    )
    refill_seconds: float = field(
        default=300.0, metadata=option_help("after the burst, one more API call each this many seconds")
    )
    queue_events: int = field(
        default=10000,
        metadata=option_help("kills waiting to be posted; past that they are dropped and counted"),
    )
    reporting_instance: str | None = field(
        default=None, metadata=option_help("reportingInstance of the Events; unset: oomstream-<node name>")
    )

    def __post_init__(self) -> None:
        for key in ("repeat_window_seconds", "refill_seconds"):
            if getattr(self, key) <= 0:
                raise OptionError(key, "must be > 0")
        for key in ("burst_calls", "queue_events"):
            if getattr(self, key) < 1:
                raise OptionError(key, "must be >= 1")
        if self.reporting_instance is not None and not self.reporting_instance.strip():
            raise OptionError("reporting_instance", "must not be empty (leave it unset for oomstream-<node>)")

    def check_config(self, enabled: tuple[str, ...]) -> None:
        """``enabled``: sinks.enabled. Events on pods are a copy of what the first sink delivers:
        the first sink decides delivery and checkpoints, which this one cannot."""
        if enabled and enabled[0] == "k8s_events":
            raise ConfigError(
                f"sinks.enabled: {list(enabled)!r}: k8s_events cannot be the first sink (the first "
                "decides delivery and checkpoints); list it after one, e.g. "
                'sinks.enabled = ["kafka", "k8s_events"]',
                key="sinks.enabled",
            )


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
    victim = event.victim
    analysis = event.analysis
    who = f"process {victim.comm or '?'} (pid {victim.pid})" if victim is not None else "a process"
    container = event.kubernetes.container if event.kubernetes is not None else None
    where = f" in container {container}" if container else ""
    text = f"{who}{where} killed by the kernel OOM killer"
    if analysis is not None:
        limit = LIMIT_WORDS.get(analysis.limit_fired, "")
        if limit and analysis.limit_bytes is not None and analysis.limit_fired != "node":
            limit = f"{limit} {_quantity(analysis.limit_bytes)}"
        text += f" {limit}" if limit else ""
        if analysis.rss_bytes is not None:
            text += f"; RSS {_quantity(analysis.rss_bytes)}"
            if analysis.rss_fraction_of_limit is not None:
                text += f" ({analysis.rss_fraction_of_limit * 100:.1f}%)"
    if event.trigger is not None and event.trigger.comm:
        text += f"; trigger {event.trigger.comm}"
    return text


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(seconds: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds), as ``series.lastObservedTime`` takes."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_Copy = tuple[str | None, tuple[object, ...]]  # a submitted event's id and positions, for its result


@dataclass
class _Tracked:
    """One container's Event: what the API server holds, and kills not sent yet."""

    namespace: str
    pod: str
    pod_uid: str | None
    container: str | None
    name: str | None = None  # the Event's name once created
    count: int = 0  # the count the API server holds
    last_sent_mono: float = 0.0  # when the server's copy was last written (monotonic)
    pending: list[_Copy] = field(default_factory=list)  # kills not sent yet
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


class K8sEventSink(Sink):
    """``async with`` opens the API client and runs the posting task; ``submit`` only queues."""

    def __init__(
        self,
        options: K8sEventsOptions,
        api: KubeApi,
        node: str,
        *,
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="k8s_events", on_delivery=on_delivery, registry=registry)
        self.api = api  # opened by start, closed by close: the sink owns it
        self.node = node
        self.instance = options.reporting_instance or f"oomstream-{node}"
        self.repeat_window_seconds = options.repeat_window_seconds
        self.queue_events = options.queue_events
        self.clock = clock
        self.wall_clock = wall_clock
        self.bucket = TokenBucket(options.burst_calls, options.refill_seconds, clock)
        self.counts: Tally = K8S_EVENTS_TELEMETRY.tally()
        self._queue: asyncio.Queue[tuple[OomEvent, tuple[object, ...]]] = asyncio.Queue()
        self._pending_total = 0  # kills in _tracked not sent yet; with the queue <= queue_events
        self._tracked: OrderedDict[tuple[str, str, str], _Tracked] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_limit = max(MAX_SEEN_EVENT_IDS, 2 * options.queue_events)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._api_open = False
        self._last_forbidden_log = -FORBIDDEN_LOG_INTERVAL_SECONDS
        self._retry_at = 0.0

    # -- the first sink's side: never blocks -----------------------------------------------------

    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        self.observe(event, tuple(positions))

    def observe(self, event: AnyEvent, positions: tuple[object, ...] = ()) -> None:
        """Queue a kill in a pod for posting; anything else has nothing to post (ACKED now)."""
        if not isinstance(event, OomEvent):
            self._result(event.event_id, positions, DeliveryStatus.ACKED, "not_a_kernel_kill")
            return
        kube = event.kubernetes
        if kube is None or not kube.namespace or not kube.pod:
            self.counts["skipped_not_in_a_pod"] += 1
            self._result(event.event_id, positions, DeliveryStatus.ACKED, "not_in_a_pod")
            return
        if event.event_id in self._seen:
            # The spool resent an event that failed on the first sink: posted (or queued) already.
            self.counts["duplicates"] += 1
            self._result(event.event_id, positions, DeliveryStatus.ACKED, "duplicate")
            return
        if self._queue.qsize() + self._pending_total >= self.queue_events:
            self.counts["dropped_queue_full"] += 1
            self._result(event.event_id, positions, DeliveryStatus.FAILED, "queue_full")
            return
        self._seen[event.event_id] = None
        while len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        self._queue.put_nowait((event, positions))
        self._wakeup.set()

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        self._result(letter.event_id, tuple(positions), DeliveryStatus.ACKED, "not_a_kernel_kill")

    def _result(
        self,
        event_id: str | None,
        positions: tuple[object, ...],
        status: DeliveryStatus,
        reason: str | None = None,
        error: str | None = None,
    ) -> None:
        self._report(DeliveryResult(event_id, positions, status, reason=reason, error=error))

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        if not self._api_open:
            await self.api.__aenter__()
            self._api_open = True
        self._task = asyncio.create_task(self._run(), name="k8s-events")

    async def flush(self, timeout_seconds: float | None = None) -> None:
        """Post what the bucket allows within ``timeout_seconds`` (real time: shutdown is, whatever
        the bucket's clock)."""
        deadline = time.monotonic() + (CLOSE_FLUSH_SECONDS if timeout_seconds is None else timeout_seconds)
        while (
            self._task is not None
            and (not self._queue.empty() or self._sendable())
            and time.monotonic() < deadline
        ):
            self._wakeup.set()
            await asyncio.sleep(0.02)

    async def close(self, flush_seconds: float = CLOSE_FLUSH_SECONDS) -> None:
        """Post what the bucket allows within ``flush_seconds``, then stop; the rest is counted
        and reported FAILED."""
        if self._task is not None:
            await self.flush(flush_seconds)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            self._track(*self._queue.get_nowait())
        left = 0
        for tracked in self._tracked.values():
            left += len(tracked.pending)
            self._settle(tracked, DeliveryStatus.FAILED, "unsent_at_shutdown")
        if left:
            self.counts["unsent_at_shutdown"] += left
            log.info("kubernetes events: %d kill(s) not posted at shutdown (rate bound)", left)
        if self._api_open:
            self._api_open = False
            await self.api.close()

    aclose = close

    def _sendable(self) -> bool:
        return self._pending_total > 0 and self.bucket.tokens >= 1.0

    # -- the posting task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._queue.empty():
                self._track(*self._queue.get_nowait())
            await self._send_pending()
            self._wakeup.clear()
            if not self._queue.empty():
                continue
            wait = None
            if self._pending_total:
                wait = max(self.bucket.seconds_until_token(), self._retry_at - self.clock(), 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def _track(self, event: OomEvent, positions: tuple[object, ...]) -> None:
        kube = event.kubernetes
        assert kube is not None and kube.namespace and kube.pod  # observe
        key = (kube.namespace, kube.pod, kube.container or "")
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = _Tracked(kube.namespace, kube.pod, kube.pod_uid, kube.container)
            self._tracked[key] = tracked
            while len(self._tracked) > MAX_TRACKED:
                oldest_key, oldest = next(iter(self._tracked.items()))
                if oldest.pending:
                    break
                del self._tracked[oldest_key]
        else:
            self._tracked.move_to_end(key)
        tracked.pending.append((event.event_id, positions))
        self._pending_total += 1
        tracked.pending_message = kill_message(event)
        tracked.pending_wall = _event_wall_time(event) or self.wall_clock()
        self.counts["kills_observed"] += 1

    def _settle(
        self, tracked: _Tracked, status: DeliveryStatus, reason: str | None = None, error: str | None = None
    ) -> None:
        """Report every pending kill of ``tracked`` and forget them."""
        for event_id, positions in tracked.pending:
            self._result(event_id, positions, status, reason, error)
        self._pending_total -= len(tracked.pending)
        tracked.pending = []
        tracked.aggregated = False

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
        from streamer.kube.api import KubeApiError

        sending = len(tracked.pending)
        message = tracked.pending_message
        if tracked.aggregated and sending > 1:
            message = f"(combined from similar events): {message}"
        now = self.clock()
        repeat = tracked.name is not None and now - tracked.last_sent_mono <= self.repeat_window_seconds
        if repeat:
            assert tracked.name is not None
            count = tracked.count + sending
            patch = {
                "count": count,
                "lastTimestamp": _rfc3339(tracked.pending_wall),
                "message": message,
                "series": {"count": count, "lastObservedTime": _micro_time(tracked.pending_wall)},
            }
            path = f"/api/v1/namespaces/{tracked.namespace}/events/{tracked.name}"
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
            self.counts["events_created"] += 1
        tracked.count = int(stored.get("count") or tracked.count + sending)
        tracked.last_sent_mono = now
        if sending > 1:
            self.counts["kills_aggregated"] += sending - 1
        self.counts["kills_posted"] += sending
        self._settle(tracked, DeliveryStatus.ACKED)

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
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": tracked.namespace},
            "involvedObject": involved,
            "reason": REASON,
            "message": message,
            "type": "Warning",
            "source": {"component": REPORTER, "host": self.node},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": count,
            "reportingComponent": REPORTER,
            "reportingInstance": self.instance,
            "action": "OOMKill",
        }
        if count > 1:  # kills aggregated into the first post: already a series
            body["series"] = {"count": count, "lastObservedTime": _micro_time(tracked.pending_wall)}
        return body

    def _failed(self, tracked: _Tracked, error: KubeApiError) -> None:
        self.counts[f"errors_{error.status or error.reason or 'other'}"] += 1
        if error.status == 403:
            now = self.clock()
            if now - self._last_forbidden_log >= FORBIDDEN_LOG_INTERVAL_SECONDS:
                self._last_forbidden_log = now
                log.error(
                    "kubernetes events: %s. The Event sink needs RBAC verbs create and patch on "
                    "events (core API group) in the pod's namespace: deploy with the k8s_events "
                    "RBAC rule (deploy/kubernetes/oomstream-k8s-events.yaml), or remove "
                    "k8s_events from sinks.enabled",
                    error,
                )
            # RBAC may be fixed later; these kills are dropped (counted), the next ones try again.
            self.counts["kills_dropped_forbidden"] += len(tracked.pending)
            self._settle(tracked, DeliveryStatus.FAILED, "forbidden", str(error))
        elif error.retriable:
            log.warning("kubernetes events: %s; retrying in a few seconds", error)
        else:
            log.error("kubernetes events: %s; %d kill(s) not posted", error, len(tracked.pending))
            self.counts["kills_dropped_rejected"] += len(tracked.pending)
            self._settle(tracked, DeliveryStatus.FAILED, "rejected", str(error))


def _event_wall_time(event: OomEvent) -> float | None:
    if not event.time:
        return None
    try:
        return datetime.fromisoformat(event.time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- the component: [sinks.k8s_events] -------------------------------------------------------------


async def build(options: K8sEventsOptions, context: BuildContext) -> K8sEventSink:
    from streamer.kube.api import KubeApi, KubeApiConfig

    kube = context.config.kubernetes
    mode = kube.resolved_mode(os.environ)
    if mode == "off":
        raise SinkConfigError(
            "sinks.enabled has 'k8s_events', which posts Events through the Kubernetes API, but "
            "kubernetes.mode resolved to off (no in-cluster service account, no kubeconfig): set "
            "kubernetes.mode, or remove k8s_events from sinks.enabled",
            setting="sinks.enabled",
        )
    api = KubeApi(
        KubeApiConfig(
            mode=mode,
            kubeconfig_path=kube.kubeconfig_path,
            context=kube.context,
            request_timeout_seconds=kube.request_timeout_seconds,
        )
    )
    sink = K8sEventSink(
        options,
        api,
        context.node_name,
        on_delivery=context.on_delivery,
        registry=context.metrics.registry,
        clock=context.monotonic,
        wall_clock=context.wall_clock,
    )
    context.metrics.track_source("k8s_events", sink.counts)
    return sink


COMPONENT = Component(
    options=K8sEventsOptions,
    build=build,
    help="a Kubernetes Event on the pod for each kernel OOM kill (a side sink: list it after kafka)",
)
