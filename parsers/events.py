"""The normalized OOM event, schema version 1 (see parsers/schema/oom-event.v1.json).

The event classes are frozen dataclasses without slots on purpose: orjson serializes a
dataclass through its ``__dict__`` twice as fast as through slots (about 7 µs against 14 µs
per event here), and serialization is the largest single cost per event in the Kafka sink.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from parsers.cgroup import identify

SCHEMA_VERSION = 1
EVENT_TYPE_OOM_KILL = "oom_kill"
# Signals Kubernetes itself gives about memory (parsers/k8s.py builds them; schema/k8s-event.v1.json).
EVENT_TYPE_K8S_OOM_KILLED = "k8s_oom_killed"  # container status terminated.reason OOMKilled
EVENT_TYPE_K8S_EVICTED = "k8s_evicted"  # pod evicted for node memory pressure
EVENT_TYPE_K8S_SYSTEM_OOM = "k8s_system_oom"  # kubelet Node Event SystemOOM
EVENT_TYPE_K8S_OOM_KILLING = "k8s_oom_killing"  # node-problem-detector Node Event OOMKilling
EVENT_TYPE_K8S_MEMORY_PRESSURE = "k8s_memory_pressure"  # EvictionThresholdMet, NodeHasInsufficientMemory
K8S_EVENT_TYPES = (
    EVENT_TYPE_K8S_OOM_KILLED,
    EVENT_TYPE_K8S_EVICTED,
    EVENT_TYPE_K8S_SYSTEM_OOM,
    EVENT_TYPE_K8S_OOM_KILLING,
    EVENT_TYPE_K8S_MEMORY_PRESSURE,
)
EVENT_TYPE_INCIDENT = "incident"  # one summary per correlated kill (schema/incident.v1.json)


@dataclass(frozen=True)
class Victim:
    pid: int | None
    comm: str | None
    uid: int | None = None
    oom_score_adj: int | None = None
    total_vm_kb: int | None = None
    anon_rss_kb: int | None = None
    file_rss_kb: int | None = None
    shmem_rss_kb: int | None = None
    pgtables_kb: int | None = None
    score: int | None = None  # "Kill process N (c) score S" (kernels before 5.1)
    already_exiting: bool = False  # "OOM victim N (c) is already exiting": no signal was sent


@dataclass(frozen=True)
class Trigger:
    pid: int | None
    comm: str | None
    gfp_mask: str | None = None  # the hex token as printed, e.g. "0xcc0"
    gfp_flags: list[str] | None = None  # the flag names printed after it, e.g. ["GFP_KERNEL"]
    order: int | None = None
    oom_score_adj: int | None = None


@dataclass(frozen=True)
class CgroupInfo:
    task_memcg: str | None = None
    oom_memcg: str | None = None
    pod_uid: str | None = None
    container_id: str | None = None
    runtime: str | None = None
    qos_class: str | None = None
    driver: str | None = None
    limit_scope: str | None = None
    source: str = "none"  # report | pid_index | memory_events | none
    oom_group: str | None = None  # "Tasks in <path> are going to be killed due to memory.oom.group set"

    @classmethod
    def identified(
        cls,
        identity_path: str | None,
        *,
        task_memcg: str | None,
        oom_memcg: str | None,
        limit_scope: str | None,
        source: str,
        oom_group: str | None = None,
    ) -> CgroupInfo:
        """The cgroup facts with the pod/container identity read from ``identity_path``."""
        identity = identify(identity_path)
        return cls(
            task_memcg=task_memcg,
            oom_memcg=oom_memcg,
            pod_uid=identity.pod_uid,
            container_id=identity.container_id,
            runtime=identity.runtime,
            qos_class=identity.qos_class,
            driver=identity.driver,
            limit_scope=limit_scope,
            source=source,
            oom_group=oom_group,
        )


@dataclass(frozen=True)
class MemcgUsage:
    usage_kb: int | None = None
    limit_kb: int | None = None
    failcnt: int | None = None
    memsw_usage_kb: int | None = None  # v1 "memory+swap:" (memory and swap together)
    memsw_limit_kb: int | None = None
    swap_usage_kb: int | None = None  # v2 "swap:"
    swap_limit_kb: int | None = None
    kmem_usage_kb: int | None = None
    kmem_limit_kb: int | None = None


@dataclass(frozen=True)
class TaskRow:
    pid: int
    uid: int | None
    tgid: int | None
    total_vm_pages: int | None
    rss_pages: int | None
    rss_anon_pages: int | None
    rss_file_pages: int | None
    rss_shmem_pages: int | None
    pgtables_bytes: int | None
    nr_ptes: int | None
    swapents: int | None
    oom_score_adj: int | None
    name: str


@dataclass(frozen=True)
class Reaped:
    anon_rss_kb: int | None
    file_rss_kb: int | None
    shmem_rss_kb: int | None
    kernel_time: float | None


@dataclass(frozen=True)
class Source:
    kind: str
    format: str | None
    position: dict[str, Any] | None  # the kill line (or, for a partial report, its first line)
    report_position: dict[str, Any] | None = None  # the report's first line: resume here to reread it


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A Kubernetes object named by kind and name (a pod's owner, its workload)."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PodMetadata:
    """``kubernetes`` of an ``oom_kill`` or ``k8s_*`` event: the pod and container that were hit,
    from the node's pod cache (streamer/enrich/enricher.py). Field order is the JSON's."""

    namespace: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    container: str | None = None
    container_id: str | None = None
    node: str | None = None
    qos_class: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owner: ObjectRef | None = None
    workload: ObjectRef | None = None
    image: str | None = None
    memory_request_bytes: int | None = None
    memory_limit_bytes: int | None = None
    pod_memory_limit_bytes: int | None = None
    restart_count: int | None = None
    static_pod: bool = False
    deleted: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PodMetadata:
        values = dict(data)
        for key in ("owner", "workload"):
            if values.get(key) is not None:
                values[key] = ObjectRef(**values[key])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Enrichment:
    """``enrichment``: how ``kubernetes`` was filled, or why not (``status``), and from where."""

    status: str  # ok, pod_not_found, not_kubernetes, no_cgroup, disabled
    source: str | None  # api_watch, tombstone, ...

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Enrichment:
        if "waited_seconds" in data:
            return WaitedEnrichment(**data)
        return Enrichment(**data)


@dataclass(frozen=True, slots=True)
class WaitedEnrichment(Enrichment):
    """An enrichment that looked the pod up: the JSON has ``waited_seconds`` only then."""

    waited_seconds: float


@dataclass(frozen=True, slots=True)
class Analysis:
    """``analysis``: what the report's numbers mean (which limit fired, the victim's RSS against it)."""

    limit_fired: str
    limit_bytes: int | None
    rss_bytes: int | None
    rss_fraction_of_limit: float | None


@dataclass(frozen=True, slots=True)
class IncidentKubernetes:
    """``kubernetes`` of an incident: who was hit, merged from its signals."""

    namespace: str | None
    pod: str | None
    pod_uid: str | None
    container: str | None
    container_id: str | None
    workload: ObjectRef | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentKubernetes:
        values = dict(data)
        if values.get("workload") is not None:
            values["workload"] = ObjectRef(**values["workload"])
        return cls(**values)


@dataclass(frozen=True)
class OomEvent:
    event_id: str
    time: str | None
    time_source: str | None
    kernel_time: float | None
    host: str | None
    boot_id: str | None
    victim: Victim | None
    trigger: Trigger | None
    constraint: str | None
    cgroup: CgroupInfo
    memcg: MemcgUsage | None
    tasks: list[TaskRow] | None
    tasks_total: int | None
    group_kill: bool
    partial: bool
    partial_reason: str | None
    kill_message: str | None  # "Memory cgroup out of memory", "Out of memory", ...
    reaped: Reaped | None
    memcg_stats: dict[str, int] | None  # as printed; keys ending in _kb were printed in KB
    mem_info: dict[str, int] | None  # global OOM "Mem-Info:" counters, in pages
    source: Source
    kubernetes: PodMetadata | None = None  # pod metadata (streamer/enrich/enricher.py)
    schema_version: int = SCHEMA_VERSION
    type: str = EVENT_TYPE_OOM_KILL
    raw_lines: list[str] | None = field(default=None)  # kept for partial reports (dead-letter)
    # Lines the partial report had: more than raw_lines when the assembler's line bound cut it.
    raw_lines_total: int | None = None
    enrichment: Enrichment | None = None  # how `kubernetes` was found or why not
    analysis: Analysis | None = None  # what the numbers mean: which limit fired, RSS / limit
    incident_id: str | None = None  # shared by every signal of one kill (streamer/enrich/incidents.py)


@dataclass(frozen=True)
class K8sEvent:
    """One memory signal from Kubernetes: a container status, an Event object's occurrence."""

    event_id: str
    type: str  # one of K8S_EVENT_TYPES
    time: str | None  # when the signal happened, RFC 3339 UTC
    host: str | None  # the node name
    reason: str  # the Kubernetes reason as given: OOMKilled, Evicted, SystemOOM, OOMKilling, ...
    message: str | None
    namespace: str | None
    pod: str | None
    pod_uid: str | None
    container: str | None
    container_id: str | None  # bare id (64 hex for containerd/CRI-O/docker), as in CgroupInfo
    pid: int | None  # the killed process, when the message names it (NPD, kubelet SystemOOM)
    comm: str | None
    occurrence: int  # 1-based: which occurrence of the Event object (count / series.count) this is
    details: dict[str, Any]  # reason-specific facts: exit_code, finished_at, restart_count, ...
    origin: dict[str, Any]  # the object read: kind, api_version, uid, resource_version, component
    source: Source
    # {"first": a, "last": b}: occurrences a..b of the object, older than this one, that were not
    # emitted one by one (a count jump above the backfill cap); set on the first event of the jump.
    skipped_occurrences: dict[str, int] | None = None
    kubernetes: PodMetadata | None = None
    enrichment: Enrichment | None = None
    incident_id: str | None = None
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class IncidentEvent:
    """The summary of one correlated kill, published when its window closes."""

    event_id: str
    incident_id: str
    time: str | None  # first_seen
    first_seen: str | None
    last_seen: str | None
    host: str | None
    signals: list[str]  # event types seen, sorted, unique
    signal_event_ids: list[str]
    kills: int  # kernel oom_kill events in the incident
    victims: list[dict[str, Any]]  # {pid, comm} of each kernel kill
    kubernetes: IncidentKubernetes | None  # namespace, pod, pod_uid, container, workload
    verdict: str
    visible_in_kubernetes: bool | None  # False: the kernel killed, Kubernetes never said so
    workload_kills_in_window: int  # kills of the same workload within the window, this one included
    window_seconds: float
    # Incidents opened separately and then found to be this kill (signals that arrived before the
    # one that links them): their events were already published with these ids.
    merged_incident_ids: list[str] = field(default_factory=list)
    type: str = EVENT_TYPE_INCIDENT
    schema_version: int = SCHEMA_VERSION


AnyEvent = OomEvent | K8sEvent | IncidentEvent


def format_time(unix_seconds: float | None) -> str | None:
    """RFC 3339 UTC with microseconds, as the schema requires."""
    if unix_seconds is None:
        return None
    try:
        moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event_id(
    *,
    boot_id: str | None,
    host: str | None,
    kernel_time: float | None,
    wall_time: float | None,
    pid: int | None,
    fallback: str | None,
) -> str:
    """A deterministic id: the same kill read from any format that carries the same facts.

    The strongest facts win: (boot id, kernel time, pid) identify a kill uniquely on a machine.
    Without a boot id, (kernel time in µs, pid) alone: the host is left out on purpose, because
    formats name it differently or not at all (dmesg has none, syslog a short name), and the
    same µs and pid on two kills is not a practical risk. Without a kernel time, the host and the
    wall time; without either, the source position (``fallback``), so rereading the same file
    still matches.
    """
    pid_part = "-" if pid is None else str(pid)
    if kernel_time is not None:
        micros = round(kernel_time * 1_000_000)
        anchor = f"b={boot_id}" if boot_id else "b="
        key = f"v1|{anchor}|k={micros}|p={pid_part}"
    elif wall_time is not None:
        key = f"v1|h={host or ''}|w={round(wall_time * 1_000_000)}|p={pid_part}"
    else:
        key = f"v1|h={host or ''}|s={fallback or ''}|p={pid_part}"
    return _uuid_shaped_digest(key)


def event_to_json(event: AnyEvent) -> bytes:
    return orjson.dumps(event)


def make_signal_id(*parts: object) -> str:
    """A deterministic id for a non-kernel event from the facts that identify it."""
    key = "v1|" + "|".join("" if part is None else str(part) for part in parts)
    return _uuid_shaped_digest(key)


def _uuid_shaped_digest(key: str) -> str:
    """A 128-bit blake2b digest of ``key``, written like a UUID (8-4-4-4-12 hex)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def any_event_from_dict(data: dict[str, Any]) -> AnyEvent:
    """Rebuild any published event from its JSON form, by its ``type``. Raises on a wrong shape."""
    kind = data.get("type")
    if kind == EVENT_TYPE_OOM_KILL:
        return event_from_dict(data)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {data.get('schema_version')!r}")
    if kind in K8S_EVENT_TYPES:
        fields = dict(data)
        fields["source"] = Source(**fields["source"])
        _typed_enrichment(fields)
        return K8sEvent(**fields)
    if kind == EVENT_TYPE_INCIDENT:
        fields = dict(data)
        if fields.get("kubernetes") is not None:
            fields["kubernetes"] = IncidentKubernetes.from_dict(fields["kubernetes"])
        return IncidentEvent(**fields)
    raise ValueError(f"unknown event type {kind!r}")


def event_to_dict(event: AnyEvent) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(orjson.dumps(event))
    return result


def event_from_dict(data: dict[str, Any]) -> OomEvent:
    """Rebuild an event from its JSON form (spool replay, consumers). Raises on a wrong shape."""

    def part(cls: Any, value: Any) -> Any:
        return None if value is None else cls(**value)

    fields = dict(data)
    if fields.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {fields.get('schema_version')!r}")
    fields["victim"] = part(Victim, fields.get("victim"))
    fields["trigger"] = part(Trigger, fields.get("trigger"))
    fields["cgroup"] = CgroupInfo(**fields["cgroup"])
    fields["memcg"] = part(MemcgUsage, fields.get("memcg"))
    tasks = fields.get("tasks")
    fields["tasks"] = None if tasks is None else [TaskRow(**row) for row in tasks]
    fields["reaped"] = part(Reaped, fields.get("reaped"))
    fields["source"] = Source(**fields["source"])
    _typed_enrichment(fields)
    if fields.get("analysis") is not None:
        fields["analysis"] = Analysis(**fields["analysis"])
    return OomEvent(**fields)


def _typed_enrichment(fields: dict[str, Any]) -> None:
    if fields.get("kubernetes") is not None:
        fields["kubernetes"] = PodMetadata.from_dict(fields["kubernetes"])
    if fields.get("enrichment") is not None:
        fields["enrichment"] = Enrichment.from_dict(fields["enrichment"])
