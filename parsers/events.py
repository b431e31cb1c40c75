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

SCHEMA_VERSION = 1
EVENT_TYPE_OOM_KILL = "oom_kill"


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
    kubernetes: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    type: str = EVENT_TYPE_OOM_KILL
    raw_lines: list[str] | None = field(default=None)  # kept for partial reports (dead-letter)


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
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def event_to_json(event: OomEvent) -> bytes:
    return orjson.dumps(event)


def event_to_dict(event: OomEvent) -> dict[str, Any]:
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
    return OomEvent(**fields)
