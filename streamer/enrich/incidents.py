"""Correlate every signal of one OOM kill into an incident.

One kill can be reported up to five times: the kernel report (``oom_kill``), the pod status
(``k8s_oom_killed``, only when the container's main process died), node-problem-detector's Node Event
(``k8s_oom_killing``), the kubelet's ``SystemOOM`` Node Event (global OOMs only) and, for node
pressure, the eviction (``k8s_evicted``). :class:`Correlator` gives all of them one ``incident_id``
and, once no new signal has arrived for ``window_seconds``, emits one :class:`IncidentEvent` that says
which limit fired and whether Kubernetes ever showed the kill (the kill of a worker process or a
sidecar child never reaches the pod status).

Pure logic, no I/O, no clock reads: the caller passes ``now`` (unix seconds) to every call.

Matching. A signal joins an open incident when its time (the event's ``time``, else ``now``) lies
within ``window_seconds`` of the incident's signal times and it shares a key with it:

* a container id (bare hex; ``<runtime>://`` prefixes are stripped),
* a pod UID: the API UID (``kubernetes.pod_uid``, ``K8sEvent.pod_uid``) or the cgroup's
  (``cgroup.pod_uid``, the config hash for a static pod), any of them,
* host + pid: the kernel victim's pid against ``K8sEvent.pid`` on the same host, hosts compared by
  their first dot-separated label, case-insensitively (``node-1`` = ``node-1.example.internal``).
  This is how NPD's OOMKilling and the kubelet's SystemOOM (a global kill) join.

Rules that keep separate kills apart, applied to every join:

* an incident holds the kernel kills of one report only: a second kill of the same container is a
  new incident unless it carries the same ``source.report_position`` (and host, boot id), which is a
  memory.oom.group kill with several victims;
* an incident holds at most one pod-status ``k8s_oom_killed``: the pod status of the next restart is
  a different kill. Among the incidents a pod status may join, it takes the one whose kernel kill is
  nearest in time (incidents with a kernel kill before those without);
* two signals that both name containers, all different, never join (two containers of one pod
  killed within the window are two incidents even though they share the pod UID).

Signals arrive in any order (the kernel report is held ~2.5 s, so the pod status and NPD's event
often come first). When a signal matches several open incidents that may hold together under the
rules above (a pod status and an NPD event seen before the kernel kill that links them), they are
merged into the one opened first; its id is the one published in the summary. Events returned
before the merge keep the id of the incident they were given; the summary names those ids
(``merged_incident_ids``) and lists every member's ``event_id`` (``signal_event_ids``), so they can
still be joined (``counts["merged"]``).

``workload_kills_in_window`` counts the kill incidents (a kernel kill seen, or Kubernetes reporting
an OOM kill) of the same workload, namespace + workload kind/name, else namespace + pod, whose kill
time lies in ``[t - workload_window_seconds, t]``, ``t`` being this incident's kill time; this one
included. A group kill is one kill of the workload. Closed incidents are remembered for that, pruned
by time; open ones are looked at too.

Bounds: at most ``max_open`` open incidents (opening one more closes the least recently active one
early: its summary comes out of the next :meth:`Correlator.tick`), at most ``_MAX_MEMBERS`` signals per
incident, the workload history pruned by time and capped. Odd events (missing fields, ``None`` or
unparsable times, wrong types) never raise; they are correlated on what they have.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from parsers.events import (
    EVENT_TYPE_K8S_EVICTED,
    EVENT_TYPE_K8S_OOM_KILLED,
    EVENT_TYPE_K8S_OOM_KILLING,
    EVENT_TYPE_K8S_SYSTEM_OOM,
    EVENT_TYPE_OOM_KILL,
    Analysis,
    AnyEvent,
    IncidentEvent,
    IncidentKubernetes,
    K8sEvent,
    ObjectRef,
    OomEvent,
    PodMetadata,
    format_time,
    make_signal_id,
)
from parsers.k8s import parse_container_id
from parsers.telemetry import Count, Tally, Telemetry

CORRELATOR_TELEMETRY = Telemetry(
    "correlator",
    (
        Count("signals", "signals correlated"),
        Count("duplicates", "signals seen twice"),
        Count("joined", "signals joined to an open incident"),
        Count("merged", "incidents merged"),
        Count("incidents_opened", "incidents opened"),
        Count("incidents_closed", "incidents closed"),
        Count("closed_early", "incidents closed before their window at the open bound"),
        Count("passed_through", "events passed through uncorrelated"),
        Count("errors", "events the correlator failed on"),
        Count("time_missing", "signals without a time"),
        Count("time_unparsable", "signals whose time did not parse"),
        Count("summaries_dropped", "incident summaries dropped", bound="incident_summaries"),
        Count("workload_history_dropped", "remembered kills forgotten", bound="workload_history"),
    ),
)

__all__ = ["KILL_SIGNAL_TYPES", "VERDICTS", "Correlator"]

log = logging.getLogger(__name__)

# The K8sEvent types that describe one kill (k8s_memory_pressure does not: it passes through).
KILL_SIGNAL_TYPES = frozenset(
    {EVENT_TYPE_K8S_OOM_KILLED, EVENT_TYPE_K8S_OOM_KILLING, EVENT_TYPE_K8S_SYSTEM_OOM, EVENT_TYPE_K8S_EVICTED}
)
# Signals that say a process was OOM-killed (an eviction alone is not a kill).
_KILL_TYPES = frozenset(
    {EVENT_TYPE_OOM_KILL, EVENT_TYPE_K8S_OOM_KILLED, EVENT_TYPE_K8S_OOM_KILLING, EVENT_TYPE_K8S_SYSTEM_OOM}
)
VERDICTS = (
    "container_limit",
    "pod_limit",
    "node_allocatable",
    "node_oom",
    "evicted",
    "reported_by_kubernetes_only",
    "unknown",
)
_LIMIT_FIRED_VERDICT = {
    "container_limit": "container_limit",
    "pod_limit": "pod_limit",
    "node_allocatable": "node_allocatable",
    "node": "node_oom",
}
_LIMIT_SCOPE_VERDICT = {
    "container": "container_limit",
    "pod": "pod_limit",
    "kubepods": "node_allocatable",
    "global": "node_oom",
}
# What the summary's `kubernetes` holds (parsers/schema/incident.v1.json), taken from the members.
_KUBE_KEYS = ("namespace", "pod", "pod_uid", "container", "container_id", "workload")
_MAX_MEMBERS = 1000  # signals per incident; a longer chain opens a new incident
_MAX_HISTORY = 100_000  # remembered kill incidents for workload_kills_in_window

_Signal = OomEvent | K8sEvent
_HostPid = tuple[str, int]
_WorkloadKey = tuple[str, ...]
_K = TypeVar("_K")


# -- field access that never raises ------------------------------------------------------------------


def _str(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _kube(event: _Signal) -> PodMetadata | None:
    """The event's typed pod metadata (a malformed event must not stop the correlator)."""
    value = event.kubernetes
    return value if isinstance(value, PodMetadata) else None


def _analysis(event: OomEvent) -> Analysis | None:
    value = event.analysis
    return value if isinstance(value, Analysis) else None


def _workload(value: object) -> ObjectRef | None:
    if not isinstance(value, ObjectRef):
        return None
    kind, name = _str(value.kind), _str(value.name)
    return ObjectRef(kind, name) if kind and name else None


def _bare_id(value: object) -> str | None:
    """A container id without its ``<runtime>://`` prefix, lowercase."""
    bare = parse_container_id(_str(value))[1]
    return _str(bare.lower()) if bare is not None else None


def _uid(value: object) -> str | None:
    text = _str(value)
    return None if text is None else text.lower()


def _comm(victim: object) -> str | None:
    comm = getattr(victim, "comm", None)
    return comm if isinstance(comm, str) else None


def _host_label(value: object) -> str | None:
    """The first dot-separated label, lowercase: short and fully qualified names compare equal."""
    text = _str(value)
    if text is None:
        return None
    return text.split(".", 1)[0].lower() or None


def parse_time(value: object) -> float | None:
    """RFC 3339 (``Z`` or an offset; no offset is taken as UTC) -> unix seconds; None if unusable."""
    text = _str(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        result = moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return result if math.isfinite(result) else None


# -- what one signal brings --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    """The facts of a signal (or an incident) that decide whether signals may share an incident."""

    reports: frozenset[tuple[str, ...]] = frozenset()  # kernel reports (one per kill decision)
    pod_statuses: int = 0  # k8s_oom_killed signals
    containers: frozenset[str] = frozenset()
    size: int = 0

    def fits(self, other: _Profile) -> bool:
        if len(self.reports | other.reports) > 1:
            return False
        if self.pod_statuses + other.pod_statuses > 1:
            return False
        if self.containers and other.containers and not (self.containers & other.containers):
            return False
        return self.size + other.size <= _MAX_MEMBERS

    def __add__(self, other: _Profile) -> _Profile:
        return _Profile(
            self.reports | other.reports,
            self.pod_statuses + other.pod_statuses,
            self.containers | other.containers,
            self.size + other.size,
        )


@dataclass(frozen=True)
class _Facts:
    event: _Signal
    event_id: str
    type: str
    time: float  # the signal's time, or `now` when it has none
    containers: frozenset[str]
    pods: frozenset[str]
    host_pid: _HostPid | None
    profile: _Profile


def _report_key(event: OomEvent) -> tuple[str, ...]:
    """One kernel report: its first line's position (a group kill's victims share it)."""
    position = event.source.report_position if event.source is not None else None
    if position:
        try:
            where = json.dumps(position, sort_keys=True, default=str)
        except (TypeError, ValueError):
            where = repr(position)
        return (
            "report",
            _host_label(event.host) or "",
            _str(event.boot_id) or "",
            _str(event.source.kind) or "",
            where,
        )
    return ("event", str(event.event_id))


def _facts(event: _Signal, now: float, counts: Tally) -> _Facts:
    time = parse_time(event.time)
    if time is None:
        counts["time_missing" if event.time is None else "time_unparsable"] += 1
        time = now
    containers: set[str] = set()
    pods: set[str] = set()
    kube = _kube(event)
    if kube is not None and (bare := _bare_id(kube.container_id)) is not None:
        containers.add(bare)
    if kube is not None and (uid := _uid(kube.pod_uid)) is not None:
        pods.add(uid)
    pid: int | None
    reports: frozenset[tuple[str, ...]] = frozenset()
    pod_statuses = 0
    if isinstance(event, OomEvent):
        cgroup = event.cgroup
        if cgroup is not None:
            if (bare := _bare_id(getattr(cgroup, "container_id", None))) is not None:
                containers.add(bare)
            if (uid := _uid(getattr(cgroup, "pod_uid", None))) is not None:
                pods.add(uid)
        pid = _int(getattr(event.victim, "pid", None))
        reports = frozenset({_report_key(event)})
        kind = EVENT_TYPE_OOM_KILL
    else:
        if (bare := _bare_id(event.container_id)) is not None:
            containers.add(bare)
        if (uid := _uid(event.pod_uid)) is not None:
            pods.add(uid)
        pid = _int(event.pid)
        kind = str(event.type)
        pod_statuses = 1 if kind == EVENT_TYPE_K8S_OOM_KILLED else 0
    host = _host_label(event.host)
    host_pid = (host, pid) if host is not None and pid is not None else None
    frozen_containers = frozenset(containers)
    return _Facts(
        event=event,
        event_id=str(event.event_id),
        type=kind,
        time=time,
        containers=frozen_containers,
        pods=frozenset(pods),
        host_pid=host_pid,
        profile=_Profile(reports, pod_statuses, frozen_containers, 1),
    )


# -- one open incident -------------------------------------------------------------------------------


@dataclass
class _Incident:
    seq: int
    incident_id: str
    last_activity: float  # `now` of the latest signal: the window closes window_seconds after it
    members: list[_Facts] = field(default_factory=list)
    profile: _Profile = field(default_factory=_Profile)
    first_time: float = math.inf
    last_time: float = -math.inf
    workload: _WorkloadKey | None = None
    merged_ids: list[str] = field(default_factory=list)  # incidents absorbed into this one

    def add(self, facts: _Facts) -> None:
        self.members.append(facts)
        self.profile = self.profile + facts.profile
        self.first_time = min(self.first_time, facts.time)
        self.last_time = max(self.last_time, facts.time)

    def distance(self, time: float) -> float:
        if self.first_time <= time <= self.last_time:
            return 0.0
        return min(abs(time - self.first_time), abs(time - self.last_time))

    def kill_times(self) -> list[float]:
        return [m.time for m in self.members if m.type == EVENT_TYPE_OOM_KILL]

    def is_kill(self) -> bool:
        return any(m.type in _KILL_TYPES for m in self.members)

    def kill_time(self) -> float:
        kernel = self.kill_times()
        return min(kernel) if kernel else self.first_time


def _kubernetes(members: Iterable[_Facts]) -> IncidentKubernetes | None:
    """namespace, pod, pod_uid, container, workload: the best-enriched member first,
    gaps filled from the others (cgroup-derived ids last: a static pod's cgroup UID is a hash)."""
    candidates: list[tuple[int, int, int, dict[str, Any]]] = []  # (filled, priority, -order, values)
    for order, facts in enumerate(members):
        event = facts.event
        options: list[tuple[int, dict[str, Any]]] = []
        kube = _kube(event)
        if kube is not None:
            values: dict[str, Any] = {
                "namespace": kube.namespace,
                "pod": kube.pod,
                "pod_uid": kube.pod_uid,
                "container": kube.container,
                "container_id": kube.container_id,
                "workload": _workload(kube.workload),
            }
            options.append((3 if isinstance(event, OomEvent) else 2, values))
        if isinstance(event, K8sEvent):
            # A Node event (NPD, SystemOOM) names no pod: its namespace would be the Event object's.
            if event.pod is not None or event.pod_uid is not None or event.container_id is not None:
                fields = {
                    "namespace": event.namespace,
                    "pod": event.pod,
                    "pod_uid": event.pod_uid,
                    "container": event.container,
                    "container_id": event.container_id,
                }
                options.append((1, fields))
        elif event.cgroup is not None:
            cgroup = {
                "pod_uid": getattr(event.cgroup, "pod_uid", None),
                "container_id": getattr(event.cgroup, "container_id", None),
            }
            options.append((0, cgroup))
        for priority, values in options:
            filled = sum(1 for value in values.values() if value not in (None, ""))
            candidates.append((filled, priority, -order, values))
    candidates.sort(key=lambda item: item[:3], reverse=True)
    result: dict[str, Any] = dict.fromkeys(_KUBE_KEYS)
    for _, _, _, values in candidates:
        for key in _KUBE_KEYS:
            value = values.get(key)
            if result[key] is None and (key == "workload" or _str(value) is not None):
                result[key] = value if key == "workload" else _str(value)
    if all(value in (None, "") for value in result.values()):
        return None
    return IncidentKubernetes(**result)


def _workload_key(kube: IncidentKubernetes | None) -> _WorkloadKey | None:
    if kube is None:
        return None
    namespace = _str(kube.namespace)
    if namespace is None:
        return None
    if kube.workload is not None:
        return ("workload", namespace, kube.workload.kind, kube.workload.name)
    pod = _str(kube.pod)
    return ("pod", namespace, pod) if pod is not None else None


def _kernel_verdict(event: OomEvent) -> str:
    analysis = _analysis(event)
    fired = _LIMIT_FIRED_VERDICT.get(analysis.limit_fired) if analysis is not None else None
    if fired is not None:
        return fired
    scope = _LIMIT_SCOPE_VERDICT.get(str(getattr(event.cgroup, "limit_scope", None)))
    if scope is not None:
        return scope
    if event.constraint == "CONSTRAINT_NONE":
        return "node_oom"
    return "unknown"


def _verdict(members: list[_Facts]) -> str:
    kernel = [m.event for m in members if isinstance(m.event, OomEvent)]
    for event in kernel:
        verdict = _kernel_verdict(event)
        if verdict != "unknown":
            return verdict
    types = {m.type for m in members}
    if EVENT_TYPE_K8S_EVICTED in types:
        return "evicted"
    if not kernel and types:
        return "reported_by_kubernetes_only"
    return "unknown"


def _visible(members: list[_Facts]) -> bool | None:
    if any(m.type in (EVENT_TYPE_K8S_OOM_KILLED, EVENT_TYPE_K8S_EVICTED) for m in members):
        return True
    for m in members:
        event = m.event
        if isinstance(event, OomEvent) and (
            getattr(event.cgroup, "pod_uid", None) or _kube(event) is not None
        ):
            return False
    return None


def _discard(index: dict[_K, set[int]], key: _K, seq: int) -> None:
    holders = index.get(key)
    if holders is not None:
        holders.discard(seq)
        if not holders:
            del index[key]


# -- the correlator ----------------------------------------------------------------------------------


class Correlator:
    """Gives every signal of one kill the same ``incident_id``; summarises each incident once closed."""

    def __init__(
        self,
        *,
        window_seconds: float = 120.0,
        workload_window_seconds: float = 900.0,
        max_open: int = 10_000,
    ) -> None:
        self.window_seconds = float(window_seconds)
        self.workload_window_seconds = float(workload_window_seconds)
        self.max_open = max(1, int(max_open))
        self.counts: Tally = CORRELATOR_TELEMETRY.tally()
        self._seq = 0
        self._open: OrderedDict[int, _Incident] = OrderedDict()  # least recently active first
        self._by_event: dict[str, int] = {}
        self._by_container: dict[str, set[int]] = {}
        self._by_pod: dict[str, set[int]] = {}
        self._by_host_pid: dict[_HostPid, set[int]] = {}
        self._by_report: dict[tuple[str, ...], set[int]] = {}
        self._by_workload: dict[_WorkloadKey, set[int]] = {}
        self._pending: deque[IncidentEvent] = deque()  # closed early (max_open), out with the next tick
        # Closed kill incidents, for workload_kills_in_window: (closed at `now`, key) in closing
        # order, and per key the kill times in the same order (so both prune from the left).
        self._history: deque[tuple[float, _WorkloadKey]] = deque()
        self._history_by_key: dict[_WorkloadKey, deque[float]] = {}

    @property
    def open_incidents(self) -> int:
        return len(self._open)

    # -- public ------------------------------------------------------------------------------------

    def observe(self, event: AnyEvent, now: float) -> AnyEvent:
        """The event with ``incident_id`` set; IncidentEvent and non-kill signals pass unchanged."""
        if isinstance(event, IncidentEvent) or not isinstance(event, OomEvent | K8sEvent):
            return event
        if isinstance(event, K8sEvent) and event.type not in KILL_SIGNAL_TYPES:
            self.counts["passed_through"] += 1
            return event
        try:
            incident_id = self._observe(event, now)
        except Exception:  # a correlation bug must not stop the pipeline: publish uncorrelated
            self.counts["errors"] += 1
            log.exception("incident correlation failed for event %r", getattr(event, "event_id", None))
            return event
        return replace(event, incident_id=incident_id)

    def tick(self, now: float) -> list[IncidentEvent]:
        """Summaries of the incidents with no new signal for window_seconds (and of those closed early)."""
        closed: list[IncidentEvent] = list(self._pending)
        self._pending.clear()
        expired = [
            incident
            for incident in self._open.values()
            if not now - incident.last_activity < self.window_seconds
        ]
        for incident in sorted(expired, key=lambda i: (i.kill_time(), i.seq)):
            closed.append(self._close(incident, now))
        self._prune_history(now)
        return closed

    def flush(self) -> list[IncidentEvent]:
        """Close everything (shutdown)."""
        closed: list[IncidentEvent] = list(self._pending)
        self._pending.clear()
        for incident in sorted(self._open.values(), key=lambda i: (i.kill_time(), i.seq)):
            closed.append(self._close(incident, incident.last_activity))
        return closed

    # -- matching ----------------------------------------------------------------------------------

    def _observe(self, event: _Signal, now: float) -> str:
        self.counts["signals"] += 1
        known = self._by_event.get(str(event.event_id))
        if known is not None and known in self._open:
            self.counts["duplicates"] += 1
            incident = self._open[known]
            incident.last_activity = max(incident.last_activity, now)
            self._open.move_to_end(known)
            return incident.incident_id
        facts = _facts(event, now, self.counts)
        ranked = self._candidates(facts)
        if not ranked:
            incident = self._open_new(facts, now)
        else:
            group = [ranked[0]]
            profile = facts.profile + ranked[0].profile
            for other in ranked[1:]:
                if profile.fits(other.profile):
                    group.append(other)
                    profile = profile + other.profile
            incident = min(group, key=lambda i: i.seq)
            for other in group:
                if other is not incident:
                    self._merge(incident, other)
            self._add(incident, facts)
            self.counts["joined"] += 1
        incident.last_activity = max(incident.last_activity, now)
        self._open.move_to_end(incident.seq)
        self._reindex_workload(incident)
        return incident.incident_id

    def _candidates(self, facts: _Facts) -> list[_Incident]:
        """Open incidents this signal may join, best first."""
        seqs: set[int] = set()
        for container in facts.containers:
            seqs |= self._by_container.get(container, set())
        for pod in facts.pods:
            seqs |= self._by_pod.get(pod, set())
        if facts.host_pid is not None:
            seqs |= self._by_host_pid.get(facts.host_pid, set())
        same_report: set[int] = set()
        if facts.type == EVENT_TYPE_OOM_KILL:
            for report in facts.profile.reports:
                if report[0] == "report":
                    same_report |= self._by_report.get(report, set())
        result: list[tuple[tuple[int, int, float, int], _Incident]] = []
        for seq in seqs | same_report:
            incident = self._open.get(seq)
            if incident is None or not facts.profile.fits(incident.profile):
                continue
            near = incident.distance(facts.time)
            if seq not in same_report and not near <= self.window_seconds:
                continue
            kernel = incident.kill_times()
            if kernel:
                near = min(abs(facts.time - t) for t in kernel)
            result.append(((0 if seq in same_report else 1, 0 if kernel else 1, near, seq), incident))
        result.sort(key=lambda item: item[0])
        return [incident for _, incident in result]

    # -- bookkeeping -------------------------------------------------------------------------------

    def _open_new(self, facts: _Facts, now: float) -> _Incident:
        while len(self._open) >= self.max_open:
            _, oldest = next(iter(self._open.items()))
            self._pending.append(self._close(oldest, now))
            self.counts["closed_early"] += 1
            if len(self._pending) > self.max_open:  # nobody ticks: keep the newest summaries only
                self._pending.popleft()
                self.counts["summaries_dropped"] += 1
        self._seq += 1
        incident = _Incident(
            seq=self._seq, incident_id=make_signal_id("incident", facts.event_id), last_activity=now
        )
        self._open[incident.seq] = incident
        self._add(incident, facts)
        self.counts["incidents_opened"] += 1
        return incident

    def _add(self, incident: _Incident, facts: _Facts) -> None:
        incident.add(facts)
        seq = incident.seq
        self._by_event[facts.event_id] = seq
        for container in facts.containers:
            self._by_container.setdefault(container, set()).add(seq)
        for pod in facts.pods:
            self._by_pod.setdefault(pod, set()).add(seq)
        if facts.host_pid is not None:
            self._by_host_pid.setdefault(facts.host_pid, set()).add(seq)
        for report in facts.profile.reports:
            self._by_report.setdefault(report, set()).add(seq)

    def _unindex(self, incident: _Incident) -> None:
        seq = incident.seq
        for facts in incident.members:
            if self._by_event.get(facts.event_id) == seq:
                del self._by_event[facts.event_id]
            for container in facts.containers:
                _discard(self._by_container, container, seq)
            for pod in facts.pods:
                _discard(self._by_pod, pod, seq)
            if facts.host_pid is not None:
                _discard(self._by_host_pid, facts.host_pid, seq)
            for report in facts.profile.reports:
                _discard(self._by_report, report, seq)
        self._set_workload(incident, None)

    def _merge(self, into: _Incident, other: _Incident) -> None:
        self._unindex(other)
        del self._open[other.seq]
        for facts in other.members:
            self._add(into, facts)
        into.last_activity = max(into.last_activity, other.last_activity)
        into.merged_ids.extend([other.incident_id, *other.merged_ids])
        self.counts["merged"] += 1

    def _reindex_workload(self, incident: _Incident) -> None:
        self._set_workload(incident, _workload_key(_kubernetes(incident.members)))

    def _set_workload(self, incident: _Incident, key: _WorkloadKey | None) -> None:
        if incident.workload == key:
            return
        if incident.workload is not None:
            _discard(self._by_workload, incident.workload, incident.seq)
        incident.workload = key
        if key is not None:
            self._by_workload.setdefault(key, set()).add(incident.seq)

    # -- closing -----------------------------------------------------------------------------------

    def _close(self, incident: _Incident, now: float) -> IncidentEvent:
        self._unindex(incident)
        del self._open[incident.seq]
        members = incident.members
        kube = _kubernetes(members)
        key = _workload_key(kube)
        kill_time = incident.kill_time()
        workload_kills = self._workload_kills(key, kill_time) + (1 if incident.is_kill() else 0)
        if key is not None and incident.is_kill():
            self._remember(key, kill_time, now)
        hosts = [m.event.host for m in members if m.type == EVENT_TYPE_OOM_KILL] + [
            m.event.host for m in members
        ]
        signal_ids = list(dict.fromkeys(m.event_id for m in members))
        victims = [
            {"pid": _int(getattr(m.event.victim, "pid", None)), "comm": _comm(m.event.victim)}
            for m in members
            if isinstance(m.event, OomEvent)
        ]
        first_seen = format_time(incident.first_time) if math.isfinite(incident.first_time) else None
        last_seen = format_time(incident.last_time) if math.isfinite(incident.last_time) else None
        self.counts["incidents_closed"] += 1
        return IncidentEvent(
            event_id=make_signal_id("incident-summary", incident.incident_id),
            incident_id=incident.incident_id,
            time=first_seen,
            first_seen=first_seen,
            last_seen=last_seen,
            host=next((h for h in hosts if _str(h) is not None), None),
            signals=sorted({m.type for m in members}),
            signal_event_ids=signal_ids,
            kills=len(victims),
            victims=victims,
            kubernetes=kube,
            verdict=_verdict(members),
            visible_in_kubernetes=_visible(members),
            workload_kills_in_window=workload_kills,
            window_seconds=self.window_seconds,
            merged_incident_ids=sorted(incident.merged_ids),
        )

    def _workload_kills(self, key: _WorkloadKey | None, kill_time: float) -> int:
        """Other kill incidents of the workload with a kill time in [kill_time - window, kill_time]."""
        if key is None:
            return 0
        low = kill_time - self.workload_window_seconds
        total = sum(1 for t in self._history_by_key.get(key, ()) if low <= t <= kill_time)
        for seq in self._by_workload.get(key, ()):
            other = self._open.get(seq)
            if other is not None and other.is_kill() and low <= other.kill_time() <= kill_time:
                total += 1
        return total

    def _remember(self, key: _WorkloadKey, kill_time: float, now: float) -> None:
        self._history.append((now, key))
        self._history_by_key.setdefault(key, deque()).append(kill_time)
        while len(self._history) > _MAX_HISTORY:
            self._forget_oldest()
            self.counts["workload_history_dropped"] += 1

    def _prune_history(self, now: float) -> None:
        # A remembered kill can matter to incidents whose kill time is up to workload_window_seconds
        # later; those close at most window_seconds after their last signal.
        cutoff = now - self.workload_window_seconds - 2 * self.window_seconds
        while self._history and self._history[0][0] < cutoff:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        _, key = self._history.popleft()
        times = self._history_by_key.get(key)
        if times:
            times.popleft()
            if not times:
                del self._history_by_key[key]
