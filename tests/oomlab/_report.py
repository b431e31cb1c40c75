"""Read the facts out of a captured kernel OOM report (used to write and check fixture metadata).

This is deliberately small and strict: it only has to understand the report shapes printed by the
kernel that made the captures, and :mod:`tests.oomlab.capture` cross-checks every fact against its
own process accounting, so a misparse cannot silently end up in a ``.meta.json``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._kmsg import KmsgRecord

__all__ = ["KillEvent", "ReportScan", "comm_text", "scan_records"]

_INVOKED = re.compile(
    rb"^(?P<comm>.*) invoked oom-killer: gfp_mask=(?P<gfp>0x[0-9a-f]+)\((?P<gfp_flags>[^)]*)\), "
    rb"order=(?P<order>-?\d+), oom_score_adj=(?P<adj>-?\d+)$",
    re.S,
)
_CPU = re.compile(
    rb"^CPU: (?P<cpu>\d+) UID: (?P<uid>\d+) PID: (?P<pid>\d+) Comm: (?P<comm>.*) (?:Not tainted|Tainted: )",
    re.S,
)
_COUNTER = re.compile(
    rb"^(?P<name>memory|memory\+swap|kmem|swap): usage (?P<usage>\d+)kB, limit (?P<limit>\d+)kB, "
    rb"failcnt (?P<failcnt>\d+)$"
)
_STATS_FOR = re.compile(rb"^Memory cgroup stats for (?P<path>.*):$", re.S)
_TASK_ROW = re.compile(
    rb"^\[\s*(?P<pid>\d+)\]\s+(?P<uid>\d+)\s+(?P<tgid>\d+)\s+(?P<total_vm>\d+)\s+(?P<rss>\d+)\s+"
    rb"(?P<rss_anon>\d+)\s+(?P<rss_file>\d+)\s+(?P<rss_shmem>\d+)\s+(?P<pgtables_bytes>\d+)\s+"
    rb"(?P<swapents>\d+)\s+(?P<oom_score_adj>-?\d+) (?P<name>.*)$",
    re.S,
)
_SUMMARY = re.compile(
    rb"^oom-kill:constraint=(?P<constraint>[A-Z_]+),nodemask=(?P<nodemask>[^,]*),cpuset=(?P<cpuset>[^,]*),"
    rb"mems_allowed=(?P<mems_allowed>[^,]*),oom_memcg=(?P<oom_memcg>[^,]*),task_memcg=(?P<task_memcg>[^,]*),"
    rb"task=(?P<task>.*),pid=(?P<pid>\d+),uid=(?P<uid>\d+)$",
    re.S,
)
_KILLED = re.compile(
    rb"^(?P<prefix>Memory cgroup out of memory|Out of memory(?: \(oom_kill_allocating_task\))?): "
    rb"Killed process (?P<pid>\d+) \((?P<comm>.*)\) total-vm:(?P<total_vm_kb>\d+)kB, "
    rb"anon-rss:(?P<anon_rss_kb>\d+)kB, file-rss:(?P<file_rss_kb>\d+)kB, shmem-rss:(?P<shmem_rss_kb>\d+)kB, "
    rb"UID:(?P<uid>\d+) pgtables:(?P<pgtables_kb>\d+)kB oom_score_adj:(?P<oom_score_adj>-?\d+)$",
    re.S,
)
_REAPED = re.compile(
    rb"^oom_reaper: reaped process (?P<pid>\d+) \((?P<comm>.*)\), now anon-rss:(?P<anon_rss_kb>\d+)kB, "
    rb"file-rss:(?P<file_rss_kb>\d+)kB, shmem-rss:(?P<shmem_rss_kb>\d+)kB$",
    re.S,
)
_SUPPRESSED = re.compile(rb"^(?P<func>\S+): (?P<count>\d+) callbacks suppressed$")
_GROUP = re.compile(rb"^Tasks in (?P<path>.*) are going to be killed due to memory\.oom\.group set$", re.S)


def comm_text(raw: bytes) -> str:
    """A JSON-safe rendering of comm bytes (invalid UTF-8 shown as ``\\xNN``); see ``*_hex`` for truth."""
    return raw.decode("utf-8", "backslashreplace")


@dataclass
class KillEvent:
    """One ``Killed process`` line plus the header (``dump_header``) that preceded it, if printed."""

    killed: dict[str, Any]
    killed_seq: int
    header: dict[str, Any] | None
    reaped: dict[str, Any] | None = None


@dataclass
class ReportScan:
    kills: list[KillEvent] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    group_lines: list[dict[str, Any]] = field(default_factory=list)
    orphan_reaped: list[dict[str, Any]] = field(default_factory=list)


def _ints(m: re.Match[bytes], names: Sequence[str]) -> dict[str, int]:
    return {n: int(m.group(n)) for n in names}


def scan_records(records: Sequence[KmsgRecord]) -> ReportScan:
    """Group kernel records into kill events (header, kill line, reaper line)."""
    out = ReportScan()
    header: dict[str, Any] | None = None
    for rec in records:
        if rec.facility != 0:
            continue  # written to /dev/kmsg by user space, never part of a report
        text = rec.text
        if m := _INVOKED.match(text):
            header = {
                "first_seq": rec.seq,
                "trigger": {
                    "comm": comm_text(m.group("comm")),
                    "comm_hex": m.group("comm").hex(),
                    "oom_score_adj": int(m.group("adj")),
                },
                "gfp_mask": m.group("gfp").decode(),
                "gfp_flags": m.group("gfp_flags").decode(),
                "order": int(m.group("order")),
                "counters": {},
                "tasks": [],
            }
            continue
        if header is not None:
            if m := _CPU.match(text):
                header["trigger"].update({"pid": int(m.group("pid")), "uid": int(m.group("uid"))})
                header["cpu"] = int(m.group("cpu"))
                continue
            if m := _COUNTER.match(text):
                header["counters"][m.group("name").decode()] = _ints(m, ("usage", "limit", "failcnt"))
                continue
            if m := _STATS_FOR.match(text):
                header["stats_for"] = comm_text(m.group("path"))
                continue
            if m := _TASK_ROW.match(text):
                row: dict[str, Any] = _ints(
                    m,
                    (
                        "pid",
                        "uid",
                        "tgid",
                        "total_vm",
                        "rss",
                        "rss_anon",
                        "rss_file",
                        "rss_shmem",
                        "pgtables_bytes",
                        "swapents",
                        "oom_score_adj",
                    ),
                )
                row["name"] = comm_text(m.group("name"))
                row["name_hex"] = m.group("name").hex()
                header["tasks"].append(row)
                continue
            if m := _SUMMARY.match(text):
                header["summary"] = {
                    "constraint": m.group("constraint").decode(),
                    "nodemask": m.group("nodemask").decode(),
                    "cpuset": m.group("cpuset").decode(),
                    "mems_allowed": m.group("mems_allowed").decode(),
                    "oom_memcg": comm_text(m.group("oom_memcg")),
                    "task_memcg": comm_text(m.group("task_memcg")),
                    "task": comm_text(m.group("task")),
                    "task_hex": m.group("task").hex(),
                    "pid": int(m.group("pid")),
                    "uid": int(m.group("uid")),
                }
                header["last_seq"] = rec.seq
                continue
        if m := _KILLED.match(text):
            killed: dict[str, Any] = _ints(
                m,
                (
                    "pid",
                    "total_vm_kb",
                    "anon_rss_kb",
                    "file_rss_kb",
                    "shmem_rss_kb",
                    "uid",
                    "pgtables_kb",
                    "oom_score_adj",
                ),
            )
            killed["comm"] = comm_text(m.group("comm"))
            killed["comm_hex"] = m.group("comm").hex()
            killed["prefix"] = m.group("prefix").decode()
            out.kills.append(KillEvent(killed, rec.seq, header))
            header = None
            continue
        if m := _REAPED.match(text):
            reaped: dict[str, Any] = _ints(m, ("pid", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb"))
            reaped["comm"] = comm_text(m.group("comm"))
            reaped["seq"] = rec.seq
            for ev in reversed(out.kills):
                if ev.killed["pid"] == reaped["pid"] and ev.reaped is None:
                    ev.reaped = reaped
                    break
            else:
                out.orphan_reaped.append(reaped)
            continue
        if m := _SUPPRESSED.match(text):
            out.suppressed.append(
                {"func": m.group("func").decode(), "count": int(m.group("count")), "seq": rec.seq}
            )
            continue
        if m := _GROUP.match(text):
            out.group_lines.append({"path": comm_text(m.group("path")), "seq": rec.seq})
    return out
