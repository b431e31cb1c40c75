"""Kubernetes objects -> K8sEvent: the memory signals Kubernetes itself gives (schema/k8s-event.v1.json).

Pure: no I/O, no asyncio, no clock reads. Objects are dicts as the API server returns them
(``kubectl get -o json``, a watch stream, an event exporter's JSON lines).

Signals and where their shapes come from:

- Pod ``status.*ContainerStatuses[].state|lastState.terminated.reason == "OOMKilled"`` (set by the
  CRI runtime, copied by the kubelet) -> ``k8s_oom_killed``. One event per termination: the same
  termination stays in ``lastState`` across later pod updates and is not emitted again.
- Pod ``status.reason == "Evicted"`` with a memory message (kubelet ``pkg/kubelet/eviction/helpers.go``:
  "The node was low on resource: memory. Threshold quantity: Q, available: A. Container X was using U,
  request is R, has larger consumption of memory. ", older kubelets "..., which exceeds its request
  of R. ", admission rejections "The node had condition: [MemoryPressure]. ") -> ``k8s_evicted``, once
  per pod UID.
- Event objects (core/v1 and events.k8s.io/v1): ``OOMKilling`` / ``PodOOMKilling`` (node-problem-
  detector's kernel monitor and forks; the message is the copied kernel line(s)), ``SystemOOM``
  (kubelet ``pkg/kubelet/oom/oom_watcher_linux.go``: "System OOM encountered, victim process: <comm>,
  pid: <pid>"), ``Evicted`` (kubelet, on the Pod, annotations ``offending_containers``,
  ``offending_containers_usage``, ``starved_resource``), ``EvictionThresholdMet`` ("Attempting to
  reclaim memory"), ``NodeHasInsufficientMemory``, and any message naming ``MemoryPressure``.

An Event object stands for ``count`` occurrences (core ``count``, ``series.count`` or
``deprecatedCount``). Each occurrence is one K8sEvent with a deterministic id
``make_signal_id(type, object uid, occurrence)``, so a restart that re-emits them produces the
same ids. ``resourceVersion`` is opaque (the API says so) and is never used for ordering.

When an Event is first seen with a large count (the service starts on a node where NPD has been
counting kills for an hour) or its count jumps, only the newest ``max_backfill`` occurrences of
the jump are emitted one by one; the older ones of the jump carry nothing an occurrence of their
own could say (their time is unknown between first_timestamp and the next one, the message names
only the latest kill), so the first emitted event declares them as ``skipped_occurrences``
``{"first": a, "last": b}``. Emitted plus declared occurrences cover 1..count exactly once: per
object the tracker remembers the highest occurrence it covered; across restarts (a fresh tracker
starts again from 1) the pipeline's signal ledger, which keeps each object's highest published
occurrence, drops what was published and narrows the declared range to what was not
(``streamer.pipeline.SignalLedger``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from dateutil import parser as date_parser

from parsers.events import (
    EVENT_TYPE_K8S_EVICTED,
    EVENT_TYPE_K8S_MEMORY_PRESSURE,
    EVENT_TYPE_K8S_OOM_KILLED,
    EVENT_TYPE_K8S_OOM_KILLING,
    EVENT_TYPE_K8S_SYSTEM_OOM,
    K8sEvent,
    Source,
    make_signal_id,
)
from parsers.telemetry import Count, Tally, Telemetry

# SignalTracker.counts: oomstream_k8s_signal_tracker_total{name}.
TRACKER_TELEMETRY = Telemetry(
    "k8s.signal_tracker",
    (
        Count("signals", "signals made from objects"),
        Count("skipped_bookmark", "watch bookmarks passed over"),
        Count("skipped_kind", "objects of a kind that carries no memory signal"),
        Count("skipped_not_memory", "objects whose reason or message is not about memory"),
        Count("skipped_stale", "Event occurrences older than the ones already covered"),
        Count("skipped_duplicate", "signals already emitted"),
        Count("bad_object", "objects missing what a signal needs"),
        Count("watch_error", "watch ERROR objects"),
        Count("backfill_capped", "count jumps beyond max_backfill_occurrences"),
        Count("keys_evicted", "objects forgotten at the key bound (oldest first)", bound="k8s_tracker_keys"),
    ),
)

__all__ = [
    "SignalTracker",
    "occurrence_key",
    "parse_container_id",
    "parse_oom_killing_message",
    "parse_system_oom_message",
]

WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
OOM_KILLING_REASONS = frozenset({"OOMKilling", "PodOOMKilling"})
STATUS_LISTS = (
    ("containerStatuses", "regular"),
    ("initContainerStatuses", "init"),
    ("ephemeralContainerStatuses", "ephemeral"),
)

# Kernel kill lines as NPD copies them (config/kernel-monitor.json): before 5.1 the two lines
# "Kill process N (c) score S or sacrifice child\nKilled process N (c) total-vm:..."; since 5.1
# one line "Memory cgroup out of memory: Killed process N (c) total-vm:...". comm may hold
# spaces and parentheses, so the match is non-greedy up to the text that follows it.
_KILLED_RE = re.compile(r"Killed process (\d+) \((.*?)\) total-vm:")
_KILL_SCORE_RE = re.compile(r"Kill process (\d+) \((.*?)\) score ")
_KILLED_BARE_RE = re.compile(r"Killed process (\d+) \((.*)\)")
_SYSTEM_OOM_RE = re.compile(r"System OOM encountered, victim process: (.*), pid: (\d+)\s*$", re.DOTALL)

_NODE_LOW_RE = re.compile(r"The node was low on resource: ([^.\s]+)\.")
_NODE_CONDITION_RE = re.compile(r"The node had condition: \[([^\]]*)\]")
_THRESHOLD_RE = re.compile(r"Threshold quantity: ([^,\s]+), available: (\S+?)\.(?:\s|$)")
# New kubelets: "Container X was using U, request is R, has larger consumption of memory. "
# Older ones:   "Container X was using U, which exceeds its request of R. "
_CONTAINER_NEW_RE = re.compile(
    r"Container (\S+) was using (\S+), request is (\S+), has larger consumption of ([^.\s]+)\."
)
_CONTAINER_OLD_RE = re.compile(
    r"Container (\S+) was using (\S+), which exceeds its request of (\S+?)\.(?:\s|$)"
)
_COMBINED_PREFIX = "(combined from similar events): "  # client-go tools/record/events_cache.go
_RECLAIM_RE = re.compile(r"Attempting to reclaim (\S+)")
_MEMORY_PRESSURE_RE = re.compile(r"(?<!No)MemoryPressure")
_PRESSURE_OFF_RE = re.compile(r"MemoryPressure\W+(?:\w+\W+){0,3}?False\b")
_FIELD_PATH_RE = re.compile(r"^spec\.(?:initContainers|containers|ephemeralContainers)\{([^}]+)\}$")


# --------------------------------------------------------------------------- small parsers


def parse_container_id(value: str | None) -> tuple[str | None, str | None]:
    """``"containerd://<hex>"`` -> ``("containerd", "<hex>")``; a bare id -> ``(None, id)``."""
    if not isinstance(value, str):
        return None, None
    value = value.strip()
    if not value:
        return None, None
    runtime, sep, bare = value.partition("://")
    if not sep:
        return None, value
    return (runtime or None), (bare or None)


def parse_oom_killing_message(message: str) -> tuple[int | None, str | None]:
    """The killed pid and comm from NPD's copied kernel line(s); ``(None, None)`` when absent."""
    if not isinstance(message, str):
        return None, None
    for pattern in (_KILLED_RE, _KILL_SCORE_RE):
        match = pattern.search(message)
        if match:
            return int(match.group(1)), match.group(2)
    for line in message.splitlines():
        match = _KILLED_BARE_RE.search(line)
        if match:
            return int(match.group(1)), match.group(2)
    return None, None


def parse_system_oom_message(message: str) -> tuple[int | None, str | None]:
    """``"System OOM encountered, victim process: <comm>, pid: <pid>"`` -> ``(pid, comm)``.

    The kubelet writes only "System OOM encountered" when cAdvisor gave no process: ``(None, None)``.
    """
    if not isinstance(message, str):
        return None, None
    match = _SYSTEM_OOM_RE.search(message)
    if not match:
        return None, None
    return int(match.group(2)), match.group(1)


def normalize_time(value: Any) -> str | None:
    """An API timestamp (RFC 3339, Time or MicroTime) -> RFC 3339 UTC with microseconds, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = date_parser.isoparse(text)
        except (ValueError, OverflowError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


def _count(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and number >= 1 else None


class _BadObject(Exception):
    """The object is not the shape it claims to be."""


def occurrence_key(event: K8sEvent) -> str | None:
    """The key under which the occurrences of an Event object are counted (its uid, else
    ``namespace/name``), from a signal built from it; None for pod-status signals."""
    origin = event.origin
    if origin.get("kind") != "Event":
        return None
    uid = _str(origin.get("uid"))
    if uid is not None:
        return uid
    name = _str(origin.get("name"))
    return None if name is None else f"{_str(origin.get('namespace')) or ''}/{name}"


class _Lru:
    """A bounded mapping that forgets the least recently used key first, counting each in
    ``counts[counter]``."""

    def __init__(self, max_keys: int, counts: Tally, counter: str) -> None:
        self._max = max(1, max_keys)
        self._data: OrderedDict[str, int] = OrderedDict()
        self._counts = counts
        self._counter = counter

    def get(self, key: str) -> int | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: str, value: int) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)
            self._counts[self._counter] += 1

    def __contains__(self, key: object) -> bool:
        return key in self._data


# --------------------------------------------------------------------------- the tracker


class SignalTracker:
    """Turns Kubernetes objects (as dicts, as the API returns them) into K8sEvent, once per real signal."""

    def __init__(self, *, max_keys: int = 50_000, max_backfill: int = 100) -> None:
        """``max_keys``: objects remembered (least recently used forgotten first, counted in
        ``counts["keys_evicted"]``; a forgotten object is seen as new, and the pipeline's signal
        ledger recognizes what it gives again). ``max_backfill``: occurrences of one count jump
        emitted one by one, 0 for all of them."""
        if max_backfill < 0:
            raise ValueError(f"max_backfill must be >= 0 (0: no cap), not {max_backfill}")
        self.max_backfill = max_backfill
        self.counts: Tally = TRACKER_TELEMETRY.tally()
        # event ids of pod-status signals already emitted
        self._seen = _Lru(max_keys, self.counts, "keys_evicted")
        # Event object key -> highest occurrence covered
        self._occurrences = _Lru(max_keys, self.counts, "keys_evicted")

    # ------------------------------------------------------------------ dispatch

    def from_object(self, obj: dict[str, Any], *, source: Source, node: str | None = None) -> list[K8sEvent]:
        """A Pod, a core/v1 or events.k8s.io/v1 Event, a ``*List`` of them, or a watch event wrapper."""
        try:
            if not isinstance(obj, dict):
                raise _BadObject
            if "object" in obj and "metadata" not in obj:  # watch event {"type", "object"}
                kind = obj.get("type")
                inner = obj.get("object")
                if kind == "BOOKMARK":
                    self.counts["skipped_bookmark"] += 1
                    return []
                if kind == "ERROR":
                    self.counts["watch_error"] += 1
                    return []
                if kind not in WATCH_TYPES or not isinstance(inner, dict):
                    raise _BadObject
                return self.from_object(inner, source=source, node=node)
            kind = obj.get("kind")
            if kind == "Pod":
                return self.from_pod(obj, source=source, node=node)
            if kind == "Event":
                return self.from_event_object(obj, source=source)
            if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
                item_kind = kind[: -len("List")]
                events: list[K8sEvent] = []
                for item in obj["items"]:
                    # items of a List carry no kind/apiVersion of their own
                    if isinstance(item, dict) and "kind" not in item and item_kind in ("Pod", "Event"):
                        item = {"kind": item_kind, "apiVersion": obj.get("apiVersion"), **item}
                    events.extend(self.from_object(item, source=source, node=node))
                return events
            if isinstance(kind, str) and kind:
                self.counts["skipped_kind"] += 1
                return []
            raise _BadObject
        except Exception:  # _BadObject, or anything else: never raise on input, garbage in, nothing out
            self.counts["bad_object"] += 1
            return []

    # ------------------------------------------------------------------ pods

    def from_pod(self, pod: dict[str, Any], *, source: Source, node: str | None = None) -> list[K8sEvent]:
        try:
            return self._from_pod(pod, source=source, node=node)
        except Exception:
            self.counts["bad_object"] += 1
            return []

    def _from_pod(self, pod: dict[str, Any], *, source: Source, node: str | None) -> list[K8sEvent]:
        if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
            raise _BadObject
        metadata = pod["metadata"]
        pod_uid = _str(metadata.get("uid"))
        if pod_uid is None:
            raise _BadObject
        status = pod.get("status")
        spec = pod.get("spec")
        if (status is not None and not isinstance(status, dict)) or (
            spec is not None and not isinstance(spec, dict)
        ):
            raise _BadObject
        status = _dict(status)
        host = _str(_dict(spec).get("nodeName")) or _str(node)
        origin = {
            "kind": "Pod",
            "api_version": _str(pod.get("apiVersion")) or "v1",
            "uid": pod_uid,
            "name": _str(metadata.get("name")),
            "namespace": _str(metadata.get("namespace")),
            "resource_version": _str(metadata.get("resourceVersion")),
            "component": "kubelet",
        }
        candidates: list[K8sEvent] = []
        for field_name, container_kind in STATUS_LISTS:
            statuses = status.get(field_name)
            if statuses is None:
                continue
            if not isinstance(statuses, list):
                raise _BadObject
            for container_status in statuses:
                if not isinstance(container_status, dict):
                    raise _BadObject
                candidates.extend(
                    self._container_ooms(container_status, container_kind, pod_uid, host, origin, source)
                )
        if status.get("reason") == "Evicted":
            evicted = self._pod_eviction(status, pod_uid, host, origin, source)
            if evicted is not None:
                candidates.append(evicted)
        # commit only after the whole object was read, so a bad object leaves no trace
        events: list[K8sEvent] = []
        emitted: set[str] = set()
        for event in candidates:
            if event.event_id in emitted or event.event_id in self._seen:
                self.counts["skipped_duplicate"] += 1
                self._seen.get(event.event_id)  # refresh: still present in the pod's status
                continue
            emitted.add(event.event_id)
            self._seen.put(event.event_id, 1)
            events.append(event)
        self.counts["signals"] += len(events)
        return events

    def _container_ooms(
        self,
        status: dict[str, Any],
        container_kind: str,
        pod_uid: str,
        host: str | None,
        origin: dict[str, Any],
        source: Source,
    ) -> list[K8sEvent]:
        name = _str(status.get("name"))
        status_runtime, status_cid = parse_container_id(_str(status.get("containerID")))
        events: list[K8sEvent] = []
        for state_key in ("state", "lastState"):
            state = status.get(state_key)
            if state is None:
                continue
            if not isinstance(state, dict):
                raise _BadObject
            terminated = state.get("terminated")
            if terminated is None:
                continue
            if not isinstance(terminated, dict):
                raise _BadObject
            if terminated.get("reason") != "OOMKilled":
                continue
            runtime, container_id = parse_container_id(_str(terminated.get("containerID")))
            if container_id is None and state_key == "state":
                # the current container is the one that terminated; for lastState the status'
                # containerID names the new container, not the killed one
                runtime, container_id = status_runtime, status_cid
            started_raw = terminated.get("startedAt")
            finished_raw = terminated.get("finishedAt")
            started = normalize_time(started_raw)
            finished = normalize_time(finished_raw)
            event_id = make_signal_id(
                EVENT_TYPE_K8S_OOM_KILLED,
                pod_uid,
                name,
                container_id,
                started or _str(started_raw),
                finished or _str(finished_raw),
            )
            details: dict[str, Any] = {
                "exit_code": _int(terminated.get("exitCode")),
                "started_at": started,
                "finished_at": finished,
                "restart_count": _int(status.get("restartCount")),
                "container_kind": container_kind,
                "runtime": runtime or status_runtime,
                "image": _str(status.get("image")),
                "state": state_key,
            }
            signal = _int(terminated.get("signal"))
            if signal is not None:
                details["signal"] = signal
            events.append(
                K8sEvent(
                    event_id=event_id,
                    type=EVENT_TYPE_K8S_OOM_KILLED,
                    time=finished,
                    host=host,
                    reason="OOMKilled",
                    message=_str(terminated.get("message")),
                    namespace=origin["namespace"],
                    pod=origin["name"],
                    pod_uid=pod_uid,
                    container=name,
                    container_id=container_id,
                    pid=None,
                    comm=None,
                    occurrence=1,
                    details=details,
                    origin=dict(origin),
                    source=source,
                )
            )
        return events

    def _pod_eviction(
        self,
        status: dict[str, Any],
        pod_uid: str,
        host: str | None,
        origin: dict[str, Any],
        source: Source,
    ) -> K8sEvent | None:
        message = _str(status.get("message"))
        facts = _eviction_facts(message)
        if not facts["memory"]:
            self.counts["skipped_not_memory"] += 1
            return None
        offending = facts["offending_containers"]
        container = offending[0]["container"] if len(offending) == 1 else None
        container_id = None
        if container is not None:
            for field_name, _ in STATUS_LISTS:
                for container_status in status.get(field_name) or []:
                    if isinstance(container_status, dict) and container_status.get("name") == container:
                        container_id = parse_container_id(_str(container_status.get("containerID")))[1]
        when = None
        for condition in status.get("conditions") or []:
            if isinstance(condition, dict) and condition.get("type") == "DisruptionTarget":
                when = normalize_time(condition.get("lastTransitionTime"))
        details = {
            "message": message,
            "starved_resource": facts["starved_resource"],
            "offending_containers": offending,
            "threshold_quantity": facts["threshold_quantity"],
            "available": facts["available"],
            "node_conditions": facts["node_conditions"],
            "phase": _str(status.get("phase")),
        }
        return K8sEvent(
            event_id=make_signal_id(EVENT_TYPE_K8S_EVICTED, pod_uid),
            type=EVENT_TYPE_K8S_EVICTED,
            time=when,
            host=host,
            reason="Evicted",
            message=message,
            namespace=origin["namespace"],
            pod=origin["name"],
            pod_uid=pod_uid,
            container=container,
            container_id=container_id,
            pid=None,
            comm=None,
            occurrence=1,
            details=details,
            origin=dict(origin),
            source=source,
        )

    # ------------------------------------------------------------------ Event objects

    def from_event_object(self, obj: dict[str, Any], *, source: Source) -> list[K8sEvent]:
        try:
            return self._from_event_object(obj, source=source)
        except Exception:
            self.counts["bad_object"] += 1
            return []

    def _from_event_object(self, obj: dict[str, Any], *, source: Source) -> list[K8sEvent]:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise _BadObject
        metadata = obj["metadata"]
        api_version = _str(obj.get("apiVersion")) or "v1"
        new_api = api_version.startswith("events.k8s.io/")
        reason = obj.get("reason")
        if not isinstance(reason, str):
            raise _BadObject
        message_raw = obj.get("note") if new_api else obj.get("message")
        if message_raw is None and not new_api:
            message_raw = obj.get("note")
        if message_raw is not None and not isinstance(message_raw, str):
            raise _BadObject
        message = message_raw or None
        regarding_raw = obj.get("regarding") if new_api else obj.get("involvedObject")
        if regarding_raw is not None and not isinstance(regarding_raw, dict):
            raise _BadObject
        regarding = _dict(regarding_raw)
        series_raw = obj.get("series")
        if series_raw is not None and not isinstance(series_raw, dict):
            raise _BadObject
        series = _dict(series_raw)
        old_source = _dict(obj.get("deprecatedSource") if new_api else obj.get("source"))
        annotations = _dict(metadata.get("annotations"))

        event_type = self._classify(reason, message, regarding, annotations)
        if event_type is None:
            self.counts["skipped_not_memory"] += 1
            return []

        key = _str(metadata.get("uid"))
        if key is None:
            name = _str(metadata.get("name"))
            if name is None:
                raise _BadObject
            key = f"{_str(metadata.get('namespace')) or ''}/{name}"

        # how many times this object says the thing happened
        count: int | None
        if series:
            count = _count(series.get("count"))
            if count is not None:
                count = max(count, 2)  # a series exists only once the event repeated
        else:
            count = None
        if count is None:
            count = _count(obj.get("deprecatedCount") if new_api else obj.get("count"))
        if count is None and new_api:
            count = _count(obj.get("count"))
        count = count or 1

        if new_api:
            first_raw = obj.get("deprecatedFirstTimestamp") or obj.get("eventTime")
            last_raw = (
                series.get("lastObservedTime") or obj.get("deprecatedLastTimestamp") or obj.get("eventTime")
            )
        else:
            first_raw = obj.get("firstTimestamp") or obj.get("eventTime")
            last_raw = series.get("lastObservedTime") or obj.get("lastTimestamp") or obj.get("eventTime")
        first = normalize_time(first_raw)
        last = normalize_time(last_raw) or first

        component = (
            _str(obj.get("reportingController"))
            or _str(old_source.get("component"))
            or _str(obj.get("reportingComponent"))
        )
        regarding_kind = _str(regarding.get("kind"))
        host = (
            _str(old_source.get("host"))
            or (_str(regarding.get("name")) if regarding_kind == "Node" else None)
            or _str(obj.get("reportingInstance"))
        )

        previous = self._occurrences.get(key) or 0
        if count < previous:
            self.counts["skipped_stale"] += 1
            return []
        if count == previous:
            self.counts["skipped_duplicate"] += 1
            return []
        start = previous + 1
        skipped: dict[str, int] | None = None
        if self.max_backfill and count - start + 1 > self.max_backfill:
            skipped = {"first": start, "last": count - self.max_backfill}
            self.counts["backfill_capped"] += 1
            start = count - self.max_backfill + 1

        pid: int | None = None
        comm: str | None = None
        if event_type == EVENT_TYPE_K8S_OOM_KILLING:
            pid, comm = parse_oom_killing_message(message or "")
        elif event_type == EVENT_TYPE_K8S_SYSTEM_OOM:
            pid, comm = parse_system_oom_message(message or "")

        pod: str | None = None
        pod_uid: str | None = None
        namespace: str | None = None
        container: str | None = None
        container_id: str | None = None
        if regarding_kind == "Pod":
            pod = _str(regarding.get("name"))
            pod_uid = _str(regarding.get("uid"))
            namespace = _str(regarding.get("namespace"))
            field_path = _str(regarding.get("fieldPath"))
            match = _FIELD_PATH_RE.match(field_path or "")
            if match:
                container = match.group(1)

        base_details: dict[str, Any] = {
            "count": count,
            "first_timestamp": first,
            "last_timestamp": last,
            "event_type": _str(obj.get("type")),
            "regarding_kind": regarding_kind,
            "regarding_name": _str(regarding.get("name")),
        }
        if event_type == EVENT_TYPE_K8S_EVICTED:
            facts = _eviction_facts(message, annotations)
            base_details.update(
                starved_resource=facts["starved_resource"],
                offending_containers=facts["offending_containers"],
                threshold_quantity=facts["threshold_quantity"],
                available=facts["available"],
                node_conditions=facts["node_conditions"],
            )
            if container is None and len(facts["offending_containers"]) == 1:
                container = facts["offending_containers"][0]["container"]
        elif event_type == EVENT_TYPE_K8S_MEMORY_PRESSURE:
            reclaim = _RECLAIM_RE.search(message or "")
            base_details["starved_resource"] = reclaim.group(1) if reclaim else None

        origin = {
            "kind": "Event",
            "api_version": api_version,
            "uid": _str(metadata.get("uid")),
            "name": _str(metadata.get("name")),
            "namespace": _str(metadata.get("namespace")),
            "resource_version": _str(metadata.get("resourceVersion")),
            "component": component,
        }
        # client-go's EventAggregator folds similar events (same object and reason, other messages)
        # into one whose message is "(combined from similar events): " + the newest message; the
        # pid it names is the newest kill's, not that of the earlier occurrences.
        combined = (message or "").startswith(_COMBINED_PREFIX)
        events: list[K8sEvent] = []
        for occurrence in range(start, count + 1):
            own_message = occurrence == count or not combined
            if occurrence == count:
                when, exact = last, last is not None
            elif occurrence == 1 and first is not None:
                when, exact = first, True
            else:
                when, exact = last, False
            details = dict(base_details)
            details["time_exact"] = exact
            events.append(
                K8sEvent(
                    event_id=make_signal_id(event_type, key, occurrence),
                    type=event_type,
                    time=when,
                    host=host,
                    reason=reason,
                    message=message,
                    namespace=namespace,
                    pod=pod,
                    pod_uid=pod_uid,
                    container=container,
                    container_id=container_id,
                    pid=pid if own_message else None,
                    comm=comm if own_message else None,
                    occurrence=occurrence,
                    details=details,
                    origin=dict(origin),
                    source=source,
                    skipped_occurrences=skipped if occurrence == start else None,
                )
            )
        self._occurrences.put(key, count)
        self.counts["signals"] += len(events)
        return events

    @staticmethod
    def _classify(
        reason: str, message: str | None, regarding: dict[str, Any], annotations: dict[str, Any]
    ) -> str | None:
        if reason in OOM_KILLING_REASONS:
            return EVENT_TYPE_K8S_OOM_KILLING
        if reason == "SystemOOM":
            return EVENT_TYPE_K8S_SYSTEM_OOM
        if reason == "Evicted":
            if regarding.get("kind") != "Pod":
                return None
            return EVENT_TYPE_K8S_EVICTED if _eviction_facts(message, annotations)["memory"] else None
        if reason == "EvictionThresholdMet":
            reclaim = _RECLAIM_RE.search(message or "")
            return EVENT_TYPE_K8S_MEMORY_PRESSURE if reclaim and reclaim.group(1) == "memory" else None
        if reason == "NodeHasInsufficientMemory":
            return EVENT_TYPE_K8S_MEMORY_PRESSURE
        if message and _MEMORY_PRESSURE_RE.search(message) and not _PRESSURE_OFF_RE.search(message):
            return EVENT_TYPE_K8S_MEMORY_PRESSURE
        return None


def _eviction_facts(message: str | None, annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an eviction message (and the Evicted Event's annotations) say: is it about memory,
    which containers used more than they requested."""
    text = message or ""
    annotations = annotations or {}
    starved = _str(annotations.get("starved_resource"))
    if starved is None:
        match = _NODE_LOW_RE.search(text)
        starved = match.group(1) if match else None
    conditions: list[str] = []
    condition_match = _NODE_CONDITION_RE.search(text)
    if condition_match:
        conditions = [c for c in re.split(r"[\s,]+", condition_match.group(1)) if c]
    offending: list[dict[str, Any]] = [
        {"container": m.group(1), "usage": m.group(2), "request": m.group(3)}
        for m in _CONTAINER_NEW_RE.finditer(text)
    ]
    if not offending:
        offending = [
            {"container": m.group(1), "usage": m.group(2), "request": m.group(3)}
            for m in _CONTAINER_OLD_RE.finditer(text)
        ]
    names = _str(annotations.get("offending_containers"))
    if names is not None:
        usages = (_str(annotations.get("offending_containers_usage")) or "").split(",")
        by_name = {entry["container"]: entry for entry in offending}
        merged: list[dict[str, Any]] = []
        for index, name in enumerate(n for n in names.split(",") if n):
            entry = dict(by_name.get(name, {"container": name, "usage": None, "request": None}))
            if index < len(usages) and usages[index]:
                entry["usage"] = usages[index]
            merged.append(entry)
        offending = merged
    threshold = _THRESHOLD_RE.search(text)
    return {
        "memory": starved == "memory" or "MemoryPressure" in conditions,
        "starved_resource": starved,
        "offending_containers": offending,
        "threshold_quantity": threshold.group(1) if threshold else None,
        "available": threshold.group(2) if threshold else None,
        "node_conditions": conditions or None,
    }
