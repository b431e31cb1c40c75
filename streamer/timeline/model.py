"""The timeline model: published events in, incidents in kill-time order out.

Pure (no I/O, no clock): the terminal view, the HTML report and the live page all build on
``Timeline``. Events are the JSON objects oomstream publishes (parsers/schema/*.v1.json), read
from Kafka or from JSON lines; anything else is counted as skipped, never raised.

An *incident* is every event sharing an ``incident_id`` (streamer/enrich/incidents.py gives the
kernel kill, the Kubernetes signals and the incident summary the same id); an event without one
is an incident of its own. Its time is the kernel kill time when the kernel reported the kill,
else its earliest signal, so arrival order never matters.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from dateutil import parser as date_parser

from parsers.events import event_from_dict
from streamer.enrich.enricher import analyse

KERNEL_KILL = "oom_kill"
INCIDENT_SUMMARY = "incident"
EVICTED = "k8s_evicted"
DEAD_LETTER = "dead_letter"
# Kubernetes signals that mean "Kubernetes saw this kill" (an eviction or memory pressure does not).
K8S_KILL_SIGNALS = frozenset({"k8s_oom_killed", "k8s_oom_killing", "k8s_system_oom"})
TOP_TASKS = 5


def parse_time(value: Any) -> float | None:
    """RFC 3339 (as published) to Unix seconds; None for anything unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)  # ~1 µs; dateutil only for what it does not take
    except ValueError:
        try:
            moment = date_parser.isoparse(value)
        except (ValueError, OverflowError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(slots=True)
class Entry:
    """One published event, with the facts the timeline sorts, filters and groups by."""

    event_id: str
    type: str
    time: float | None  # event time (kernel kill time for a kill), Unix seconds
    host: str | None
    namespace: str | None
    pod: str | None
    container: str | None
    workload: str | None  # "Kind/name" when enriched
    incident_id: str | None
    kernel_time: float | None
    analysis: Mapping[str, Any] | None  # kills: limit_fired, limit_bytes, rss_bytes, rss_fraction_of_limit
    label: str | None  # "comm(pid)" of the victim (kills) or of the process a signal names
    memcg: str | None  # the killed cgroup (kills), what "repeated" counts by outside Kubernetes
    # The rest of the event, slimmed and kept encoded: ~1 KB instead of ~15 KB of Python objects,
    # which is what lets 100,000 events fit in memory. Decoded when shown.
    raw: bytes

    @property
    def is_kill(self) -> bool:
        return self.type == KERNEL_KILL

    @property
    def data(self) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self.raw)
        return decoded


def entry_from_event(data: Mapping[str, Any]) -> Entry | str:
    """The entry, or the reason the object is not a timeline event (counted by the caller)."""
    kind = data.get("type")
    event_id = data.get("event_id")
    if not isinstance(kind, str) or not isinstance(event_id, str) or not event_id:
        return "not an oomstream event (no type/event_id)"
    if kind == DEAD_LETTER:
        return "dead letter"
    kube = _mapping(data.get("kubernetes"))
    workload = _mapping(kube.get("workload"))
    workload_name = (
        f"{workload['kind']}/{workload['name']}"
        if _text(workload.get("kind")) and _text(workload.get("name"))
        else None
    )
    if kind == INCIDENT_SUMMARY:
        when = parse_time(data.get("first_seen")) or parse_time(data.get("time"))
    else:
        when = parse_time(data.get("time"))
    slim = _slim(data, kind)
    kernel_time = data.get("kernel_time")
    victim = _mapping(data.get("victim"))
    cgroup = _mapping(data.get("cgroup")) if kind == KERNEL_KILL else {}
    return Entry(
        event_id=event_id,
        type=kind,
        time=when,
        host=_text(data.get("host")) or _text(kube.get("node")),
        namespace=_text(kube.get("namespace")) or _text(data.get("namespace")),
        pod=_text(kube.get("pod")) or _text(data.get("pod")),
        container=_text(kube.get("container")) or _text(data.get("container")),
        workload=workload_name,
        incident_id=_text(data.get("incident_id")),
        kernel_time=kernel_time if isinstance(kernel_time, int | float) else None,
        analysis=slim.get("analysis") if kind == KERNEL_KILL else None,
        label=_label(victim if kind == KERNEL_KILL else data),
        memcg=(_text(cgroup.get("oom_memcg")) or _text(cgroup.get("task_memcg")))
        if kind == KERNEL_KILL
        else None,
        # A copy: orjson's result keeps its whole growth buffer (~8 KB here) allocated.
        raw=bytes(memoryview(orjson.dumps(slim))),
    )


def _label(holder: Mapping[str, Any]) -> str | None:
    comm, pid = holder.get("comm"), holder.get("pid")
    if comm is None and pid is None:
        return None
    return f"{comm or '?'}({pid if pid is not None else '?'})"


# What the timeline shows of a kernel kill; the rest (memcg_stats, mem_info, the whole task table,
# raw lines, source positions, labels) is dropped at load so 100,000 events fit in memory.
_KILL_KEYS = (
    "event_id", "type", "time", "kernel_time", "host", "victim", "trigger", "constraint", "cgroup",
    "memcg", "tasks_total", "group_kill", "partial", "partial_reason", "kill_message", "analysis",
    "incident_id", "schema_version",
)  # fmt: skip
_KUBE_KEYS = ("namespace", "pod", "pod_uid", "container", "node", "workload", "qos_class")
_MEMCG_KEYS = ("usage_kb", "limit_kb", "failcnt", "swap_usage_kb", "swap_limit_kb")
_CGROUP_KEYS = ("task_memcg", "oom_memcg", "pod_uid", "container_id", "limit_scope", "qos_class")
_TASK_KEYS = ("pid", "name", "rss_pages", "oom_score_adj")


def _slim(data: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    if kind != KERNEL_KILL:
        dropped = ("source", "details", "origin", "signal_event_ids", "victims", "enrichment")
        return {k: v for k, v in data.items() if k not in dropped}
    slim = {key: data.get(key) for key in _KILL_KEYS}
    kube = data.get("kubernetes")
    slim["kubernetes"] = {k: kube.get(k) for k in _KUBE_KEYS} if isinstance(kube, Mapping) else None
    cgroup = data.get("cgroup")
    slim["cgroup"] = {k: cgroup.get(k) for k in _CGROUP_KEYS} if isinstance(cgroup, Mapping) else None
    memcg = data.get("memcg")
    slim["memcg"] = {k: memcg.get(k) for k in _MEMCG_KEYS} if isinstance(memcg, Mapping) else None
    tasks = [t for t in data.get("tasks") or [] if isinstance(t, Mapping)]
    tasks.sort(key=lambda t: -t["rss_pages"] if isinstance(t.get("rss_pages"), int) else 0)
    slim["tasks"] = [{k: t.get(k) for k in _TASK_KEYS} for t in tasks[:TOP_TASKS]]
    if data.get("analysis") is None:
        slim["analysis"] = _analyse(data)  # needs the full report: computed before it is dropped
    return slim


@dataclass(frozen=True)
class Filters:
    """Every filter is exact (case-sensitive) except ``workload``, which also matches the bare name."""

    since: float | None = None
    until: float | None = None
    namespaces: frozenset[str] = frozenset()
    workloads: frozenset[str] = frozenset()
    pods: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    containers: frozenset[str] = frozenset()
    incidents: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def keeps(self, incident: Incident) -> bool:
        if self.since is not None and (incident.time is None or incident.time < self.since):
            return False
        if self.until is not None and (incident.time is None or incident.time >= self.until):
            return False
        checks = (
            (self.namespaces, {incident.namespace}),
            (self.pods, {incident.pod}),
            (self.nodes, {incident.node}),
            (self.containers, {incident.container}),
        )
        for wanted, have in checks:
            if wanted and not (wanted & have):
                return False
        if self.incidents and not any(
            key and any(key.startswith(prefix) for prefix in self.incidents)
            for key in (incident.key, incident.incident_id)
        ):
            return False
        if self.workloads:
            names = {incident.workload, incident.workload_key}
            if incident.workload:
                names.add(incident.workload.split("/", 1)[-1])
            if not (self.workloads & names):
                return False
        return not (self.types and not any(e.type in self.types for e in incident.events))


@dataclass
class Incident:
    """The events of one kill, joined; ``events`` in event-time order."""

    key: str
    events: list[Entry] = field(default_factory=list)
    summary: Mapping[str, Any] | None = None  # the published incident summary, when read
    # Set by Timeline.build: nth kill of this workload in the loaded range, and how many there are.
    workload_kill_number: int = 0
    workload_kills: int = 0
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def incident_id(self) -> str | None:
        for entry in self.events:
            if entry.incident_id:
                return entry.incident_id
        return _text(_mapping(self.summary).get("incident_id"))

    @property
    def kills(self) -> list[Entry]:
        cached: list[Entry] | None = self._cache.get("kills")
        if cached is None:
            cached = self._cache["kills"] = [e for e in self.events if e.is_kill]
        return cached

    def changed(self) -> None:
        """Forget derived facts (called when events or the summary change)."""
        self._cache.clear()

    @property
    def kill(self) -> Entry | None:
        kills = self.kills
        return kills[0] if kills else None

    @property
    def time(self) -> float | None:
        if "time" not in self._cache:
            self._cache["time"] = self._find_time()
        value: float | None = self._cache["time"]
        return value

    def _find_time(self) -> float | None:
        kill = self.kill
        if kill is not None and kill.time is not None:
            return kill.time
        times = [e.time for e in self.events if e.time is not None]
        if times:
            return min(times)
        return parse_time(_mapping(self.summary).get("first_seen"))

    def _first(self, attribute: str) -> str | None:
        key = "first:" + attribute
        if key not in self._cache:
            self._cache[key] = self._find_first(attribute)
        value: str | None = self._cache[key]
        return value

    def _find_first(self, attribute: str) -> str | None:
        kill = self.kill
        if kill is not None and getattr(kill, attribute):
            value: str | None = getattr(kill, attribute)
            return value
        for entry in self.events:
            if getattr(entry, attribute):
                found: str | None = getattr(entry, attribute)
                return found
        kube = _mapping(_mapping(self.summary).get("kubernetes"))
        if attribute == "host":
            return _text(_mapping(self.summary).get("host"))
        if attribute == "workload":
            workload = _mapping(kube.get("workload"))
            if _text(workload.get("kind")) and _text(workload.get("name")):
                return f"{workload['kind']}/{workload['name']}"
            return None
        return _text(kube.get(attribute))

    @property
    def node(self) -> str | None:
        return self._first("host")

    @property
    def namespace(self) -> str | None:
        return self._first("namespace")

    @property
    def pod(self) -> str | None:
        return self._first("pod")

    @property
    def container(self) -> str | None:
        return self._first("container")

    @property
    def workload(self) -> str | None:
        return self._first("workload")

    @property
    def workload_key(self) -> str:
        """Namespace + workload, else namespace + pod, else the cgroup: what "repeated" counts by."""
        if self.workload:
            return f"{self.namespace or '-'}/{self.workload}"
        if self.pod:
            return f"{self.namespace or '-'}/pod/{self.pod}"
        kill = self.kill
        return f"{self.node or '-'}:{(kill.memcg if kill else None) or '-'}"

    @property
    def analysis(self) -> Mapping[str, Any]:
        """The published analysis; for a kill published without one, the enricher's own (at load)."""
        kill = self.kill
        if kill is None:
            return {}
        return _mapping(kill.analysis)

    @property
    def limit_fired(self) -> str | None:
        if self.kill is None:
            types = {e.type for e in self.events}
            return "evicted" if EVICTED in types else "kubernetes_only"
        return _text(self.analysis.get("limit_fired")) or "unknown"

    @property
    def rss_bytes(self) -> int | None:
        value = self.analysis.get("rss_bytes")
        return value if isinstance(value, int) else None

    @property
    def limit_bytes(self) -> int | None:
        value = self.analysis.get("limit_bytes")
        return value if isinstance(value, int) else None

    @property
    def rss_fraction(self) -> float | None:
        value = self.analysis.get("rss_fraction_of_limit")
        return float(value) if isinstance(value, int | float) else None

    @property
    def signals(self) -> list[str]:
        return sorted({e.type for e in self.events})

    @property
    def visible_in_kubernetes(self) -> bool | None:
        """The summary's verdict; without one, True once a Kubernetes kill signal is here."""
        published = _mapping(self.summary).get("visible_in_kubernetes")
        if isinstance(published, bool):
            return published
        if any(e.type in K8S_KILL_SIGNALS for e in self.events):
            return True
        return None

    @property
    def victim(self) -> str | None:
        kill = self.kill
        if kill is not None:
            return kill.label or "?(?)"
        return next((entry.label for entry in self.events if entry.label), None)

    def to_dict(self) -> dict[str, Any]:
        """The machine form (``--json``, the HTML report, the live page)."""
        kill = self.kill
        kernel: dict[str, Any] | None = None
        if kill is not None:
            data = kill.data
            tasks = [t for t in data.get("tasks") or [] if isinstance(t, Mapping)]
            kernel = {
                "victim": data.get("victim"),
                "trigger": data.get("trigger"),
                "constraint": data.get("constraint"),
                "cgroup": data.get("cgroup"),
                "memcg": data.get("memcg"),
                "top_tasks": tasks[:TOP_TASKS],
                "tasks_total": data.get("tasks_total"),
                "group_kill": data.get("group_kill"),
                "partial": data.get("partial"),
                "kill_message": data.get("kill_message"),
                "kernel_time": data.get("kernel_time"),
            }
        summary = _mapping(self.summary)
        return {
            "key": self.key,
            "incident_id": self.incident_id,
            "time": format_time(self.time) if self.time is not None else None,
            "t": self.time,
            "node": self.node,
            "namespace": self.namespace,
            "workload": self.workload,
            "workload_key": self.workload_key,
            "pod": self.pod,
            "container": self.container,
            "victim": self.victim,
            "kills": len(self.kills),
            "limit_fired": self.limit_fired,
            "rss_bytes": self.rss_bytes,
            "limit_bytes": self.limit_bytes,
            "rss_fraction": self.rss_fraction,
            "visible_in_kubernetes": self.visible_in_kubernetes,
            "verdict": summary.get("verdict"),
            "workload_kill_number": self.workload_kill_number,
            "workload_kills": self.workload_kills,
            "workload_kills_in_window": summary.get("workload_kills_in_window"),
            "signals": self.signals,
            "kernel": kernel,
            "events": [_event_brief(e) for e in self.events],
        }


def _analyse(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The enricher's analysis of a kill published without one (unenriched, `oomstream parse`)."""
    try:
        event = event_from_dict(dict(data))
    except (TypeError, ValueError, KeyError, AttributeError):
        return {}
    found = analyse(event, None)
    return {} if found is None else dataclasses.asdict(found)


def _event_brief(entry: Entry) -> dict[str, Any]:
    data = entry.data
    brief: dict[str, Any] = {
        "event_id": entry.event_id,
        "type": entry.type,
        "time": format_time(entry.time) if entry.time is not None else None,
        "t": entry.time,
        "host": entry.host,
    }
    if entry.is_kill:
        victim = _mapping(data.get("victim"))
        brief.update(pid=victim.get("pid"), comm=victim.get("comm"))
    else:
        for key in ("reason", "message", "pid", "comm", "occurrence"):
            if data.get(key) is not None:
                brief[key] = data.get(key)
    return brief


@dataclass
class LoadStats:
    read: int = 0
    duplicates: int = 0
    # Why inputs were skipped (free text, printed to the user): a command's summary, not a
    # component's telemetry (nothing here becomes a metric).
    skip_reasons: Counter[str] = field(default_factory=Counter)


class Timeline:
    """Collects events (any order, duplicates allowed) and builds the ordered incidents."""

    def __init__(self) -> None:
        self.stats = LoadStats()
        self._seen: set[str] = set()
        self._incidents: dict[str, Incident] = {}
        self._aliases: dict[str, str] = {}  # merged incident id -> the id it was merged into
        self.events = 0  # events held (the live page bounds this)
        self.replaced: list[str] = []  # incident keys the last add() folded into another

    def add(self, data: Any) -> Incident | None:
        """Add one decoded event; returns the incident it joined, None when skipped or a duplicate."""
        self.stats.read += 1
        if not isinstance(data, Mapping):
            self.stats.skip_reasons[f"not a JSON object ({type(data).__name__})"] += 1
            return None
        try:
            entry = entry_from_event(data)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as error:
            # A field of an unexpected shape (a list where an object belongs...): skipped, counted.
            entry = f"malformed {data.get('type')} event ({type(error).__name__})"
        if isinstance(entry, str):
            self.stats.skip_reasons[entry] += 1
            return None
        if entry.event_id in self._seen:
            self.stats.duplicates += 1
            return None
        self._seen.add(entry.event_id)
        self.events += 1
        self.replaced = []
        if entry.type == INCIDENT_SUMMARY:
            return self._add_summary(entry)
        key = self._resolve(entry.incident_id or f"event:{entry.event_id}")
        incident = self._incidents.setdefault(key, Incident(key))
        _insort(incident.events, entry)
        incident.changed()
        return incident

    def add_all(self, events: Iterable[Any]) -> None:
        for data in events:
            self.add(data)

    def _resolve(self, key: str) -> str:
        while key in self._aliases:
            key = self._aliases[key]
        return key

    def _add_summary(self, entry: Entry) -> Incident:
        key = self._resolve(entry.incident_id or f"event:{entry.event_id}")
        incident = self._incidents.setdefault(key, Incident(key))
        summary = entry.data
        incident.summary = summary
        incident.changed()
        # Signals published before the link was found carry the old ids: fold them in.
        for merged in summary.get("merged_incident_ids") or []:
            if not isinstance(merged, str) or self._resolve(merged) == key:
                continue
            self._aliases[merged] = key
            other = self._incidents.pop(merged, None)
            if other is not None:
                self.replaced.append(merged)
                for event in other.events:
                    _insort(incident.events, event)
                if incident.summary is None:
                    incident.summary = other.summary
        return incident

    def evict_oldest(self, keep_events: int) -> list[str]:
        """Drop the oldest incidents (by time) until at most ``keep_events`` events are held.

        Their event ids are forgotten too, so memory stays bounded; a duplicate of an evicted event
        arriving later shows again, which a bounded window has to accept.
        """
        if self.events <= keep_events:
            return []
        dropped: list[str] = []
        for incident in sorted(self._incidents.values(), key=_incident_order):
            if self.events <= keep_events:
                break
            del self._incidents[incident.key]
            dropped.append(incident.key)
            self.events -= len(incident.events) + (1 if incident.summary is not None else 0)
            for entry in incident.events:
                self._seen.discard(entry.event_id)
            if incident.summary is not None:
                self._seen.discard(str(incident.summary.get("event_id")))
        dead = set(dropped)
        self._aliases = {k: v for k, v in self._aliases.items() if v not in dead}
        return dropped

    def incidents(self, filters: Filters | None = None) -> list[Incident]:
        """Incidents in time order (unknown times last), repeat numbers set over the result."""
        chosen = [i for i in self._incidents.values() if i.events or i.summary is not None]
        if filters is not None:
            if filters.types:
                chosen = [_only_types(i, filters.types) for i in chosen]
                chosen = [i for i in chosen if i.events]
            chosen = [i for i in chosen if filters.keeps(i)]
        chosen.sort(key=_incident_order)
        totals = Counter(i.workload_key for i in chosen if i.kills)
        numbers: Counter[str] = Counter()
        for incident in chosen:
            if incident.kills:
                numbers[incident.workload_key] += 1
                incident.workload_kill_number = numbers[incident.workload_key]
                incident.workload_kills = totals[incident.workload_key]
        return chosen


def _only_types(incident: Incident, types: frozenset[str]) -> Incident:
    events = [e for e in incident.events if e.type in types]
    if len(events) == len(incident.events):
        return incident
    return Incident(incident.key, events, incident.summary)


def _entry_order(entry: Entry) -> tuple[bool, float, float, str]:
    return (entry.time is None, entry.time or 0.0, entry.kernel_time or 0.0, entry.event_id)


def _incident_order(incident: Incident) -> tuple[bool, float, str]:
    when = incident.time
    return (when is None, when or 0.0, incident.key)


def _insort(events: list[Entry], entry: Entry) -> None:
    order = _entry_order(entry)
    index = len(events)
    while index > 0 and _entry_order(events[index - 1]) > order:
        index -= 1
    events.insert(index, entry)


@dataclass
class Group:
    key: str
    incidents: list[Incident]


def group_incidents(incidents: list[Incident], by: str) -> list[Group]:
    """``incident``: one group per incident; ``workload``/``node``: groups in first-kill order."""
    if by == "incident":
        return [Group(i.key, [i]) for i in incidents]
    groups: dict[str, Group] = {}
    for incident in incidents:
        key = incident.workload_key if by == "workload" else (incident.node or "(unknown node)")
        groups.setdefault(key, Group(key, [])).incidents.append(incident)
    return list(groups.values())


@dataclass
class Summary:
    incidents: int
    kills: int
    first_kill: float | None
    last_kill: float | None
    by_namespace: Counter[str]
    by_workload: Counter[str]
    by_limit: Counter[str]
    by_node: Counter[str]
    not_seen_by_kubernetes: int
    repeated_workloads: int
    kubernetes_only: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "kills": self.kills,
            "first_kill": format_time(self.first_kill) if self.first_kill is not None else None,
            "last_kill": format_time(self.last_kill) if self.last_kill is not None else None,
            "by_namespace": dict(self.by_namespace.most_common()),
            "by_workload": dict(self.by_workload.most_common()),
            "by_limit": dict(self.by_limit.most_common()),
            "by_node": dict(self.by_node.most_common()),
            "not_seen_by_kubernetes": self.not_seen_by_kubernetes,
            "repeated_workloads": self.repeated_workloads,
            "kubernetes_only": self.kubernetes_only,
        }


def summarize(incidents: list[Incident]) -> Summary:
    kill_times = [e.time for i in incidents for e in i.kills if e.time is not None]
    by_namespace: Counter[str] = Counter()
    by_workload: Counter[str] = Counter()
    by_limit: Counter[str] = Counter()
    by_node: Counter[str] = Counter()
    for incident in incidents:
        kills = len(incident.kills)
        if not kills:
            continue
        by_namespace[incident.namespace or "(no namespace)"] += kills
        by_workload[incident.workload_key] += kills
        by_limit[incident.limit_fired or "unknown"] += kills
        by_node[incident.node or "(unknown node)"] += kills
    return Summary(
        incidents=len(incidents),
        kills=sum(len(i.kills) for i in incidents),
        first_kill=min(kill_times) if kill_times else None,
        last_kill=max(kill_times) if kill_times else None,
        by_namespace=by_namespace,
        by_workload=by_workload,
        by_limit=by_limit,
        by_node=by_node,
        not_seen_by_kubernetes=sum(1 for i in incidents if i.visible_in_kubernetes is False),
        # Kill incidents, not kills: a group kill is one kill of its workload.
        repeated_workloads=sum(
            1 for count in Counter(i.workload_key for i in incidents if i.kills).values() if count > 1
        ),
        kubernetes_only=sum(1 for i in incidents if not i.kills),
    )


def iter_entries(incidents: Iterable[Incident]) -> Iterator[Entry]:
    for incident in incidents:
        yield from incident.events
