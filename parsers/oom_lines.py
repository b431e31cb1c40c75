"""The OOM report lines of every kernel generation (3.10 .. 6.18), in one place.

Each pattern names the kernels that print it (see mm/oom_kill.c and mm/memcontrol.c). Process
names (comm, up to 15 bytes) may hold spaces, parentheses and text that looks like a field, so
every pattern that contains a comm anchors on the stable text after it: a greedy ``(.*)`` followed
by a tail that must match to the end of the line picks the right closing parenthesis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "<comm> invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
# 3.10: "gfp_mask=0xd0, order=0, oom_score_adj=0"; 4.x: ", nodemask=(null)," before order;
# very old: ", oom_adj=0," as well.
HEADER_MARK = " invoked oom-killer: "
_HEADER_FIELD = re.compile(r"(\w+)=((?:\([^)]*\)|[^,(])*)")
_GFP = re.compile(r"(0x[0-9a-fA-F]+)(?:\(([^)]*)\))?")

# dump_stack(): "CPU: 1 PID: 2031 Comm: python3 Not tainted ..." (6.11+: "CPU: 1 UID: 0 PID: ...")
CPU_LINE = re.compile(r"CPU: (\d+) (?:UID: (\d+) )?PID: (\d+) Comm: ")

# <= 4.18: "<comm> cpuset=<path> mems_allowed=<nodes>"
CPUSET_LINE = re.compile(r"(.*) cpuset=(\S*) mems_allowed=(\S+)\s*$")

# memcg counters: v1 "memory:", "memory+swap:", "kmem:"; v2 (5.3+) "memory:", "swap:"
COUNTER_LINE = re.compile(
    r"(memory|memory\+swap|kmem|swap|tcpmem): usage (\d+)kB, limit (\d+)kB, failcnt (\d+)"
)

STATS_MARK = "Memory cgroup stats for "
_STATS_INLINE = re.compile(r"(.*?):((?: [a-z_0-9]+:\d+KB)+)\s*$")
_STAT_PAIR_INLINE = re.compile(r"([a-z_0-9]+):(\d+)KB")
STAT_LINE = re.compile(r"\s*([a-z_0-9]+) (\d+)\s*$")

# < 5.0: "Task in <task_memcg> killed as a result of limit of <oom_memcg>"
TASK_IN = re.compile(r"Task in (.*) killed as a result of limit of (.*?)\s*$")

# 4.19+: "oom-kill:constraint=...,nodemask=...,cpuset=...,mems_allowed=...,[oom_memcg=...|global_oom,
# task_memcg=...,]task=<comm>,pid=N,uid=N"
SUMMARY_MARK = "oom-kill:"
_SUMMARY_TAIL = re.compile(r",task=(.*),pid=(\d+),uid=(\d+)\s*$", re.DOTALL)

# Task table; header "[ pid ]   uid  tgid total_vm      rss nr_ptes swapents oom_score_adj name"
# (4.x adds nr_pmds, 4.19 pgtables_bytes, 6.x rss_anon rss_file rss_shmem).
TASK_STATE_MARK = "Tasks state (memory values in pages):"
TASK_HEADER = re.compile(r"\[\s*pid\s*\]\s+(.*?)\s*$")
TASK_ROW = re.compile(r"\[\s*(\d+)\]\s+(.*)$")

# Kill lines. <= 5.0: "<msg>: Kill process N (c) score S or sacrifice child" then
# "Killed process N (c) total-vm:..kB, anon-rss:..kB, file-rss:..kB[, shmem-rss:..kB]";
# RHEL 7: "Killed process N (c), UID U, total-vm:..."; 5.1+: "<msg>: Killed process N (c) ...";
# 5.4+: "..., UID:U pgtables:NkB oom_score_adj:N".
KILL_PROCESS = re.compile(
    r"(?:(.*?): )?Kill process (\d+) \((.*)\) score (-?\d+) or sacrifice child\s*$", re.DOTALL
)
KILLED_MARK = "Killed process "
_KILLED = re.compile(
    r"Killed process (\d+) \((.*)\),? (?:UID (\d+), )?total-vm:(\d+)kB, anon-rss:(\d+)kB, "
    r"file-rss:(\d+)kB(?:, shmem-rss:(\d+)kB)?(?:, UID:(\d+) pgtables:(\d+)kB oom_score_adj:(-?\d+))?"
    r"\s*$",
    re.DOTALL,
)
# Last resorts when the tail is cut or reshaped: pid and comm, or the pid alone, are still worth
# an event (a kill line must never be lost).
_KILLED_LOOSE = re.compile(r"Killed process (\d+) \((.*?)\)", re.DOTALL)
_KILLED_PID = re.compile(r"Killed process (\d+)\b")

# 4.x+: "<msg>: OOM victim N (c) is already exiting. Skip killing the task"
VICTIM_EXITING = re.compile(
    r"(?:(.*?): )?OOM victim (\d+) \((.*)\) is already exiting\. Skip killing the task", re.DOTALL
)

# 4.6+: "oom_reaper: reaped process N (c), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
REAPED = re.compile(
    r"oom_reaper: reaped process (\d+) \((.*)\), now anon-rss:(\d+)kB, file-rss:(\d+)kB"
    r"(?:, shmem-rss:(\d+)kB)?",
    re.DOTALL,
)

# 4.19+: "Tasks in <path> are going to be killed due to memory.oom.group set"
GROUP_KILL = re.compile(r"Tasks in (.*) are going to be killed due to memory\.oom\.group set")

MEM_INFO_MARK = "Mem-Info:"
MEM_INFO_PAIR = re.compile(r"([a-z_]+):(\d+)\b")


@dataclass(frozen=True, slots=True)
class Header:
    comm: str
    gfp_mask: str | None
    gfp_flags: list[str] | None
    order: int | None
    oom_score_adj: int | None
    nodemask: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    constraint: str | None
    cpuset: str | None
    oom_memcg: str | None
    task_memcg: str | None
    global_oom: bool
    comm: str | None
    pid: int | None
    uid: int | None


@dataclass(frozen=True, slots=True)
class Killed:
    message: str | None
    pid: int
    comm: str
    uid: int | None
    total_vm_kb: int | None
    anon_rss_kb: int | None
    file_rss_kb: int | None
    shmem_rss_kb: int | None
    pgtables_kb: int | None
    oom_score_adj: int | None


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None else None


def parse_header(line: str) -> Header | None:
    index = line.rfind(HEADER_MARK)
    if index < 0:
        return None
    fields = dict(_HEADER_FIELD.findall(line, index + len(HEADER_MARK)))
    gfp_mask: str | None = None
    gfp_flags: list[str] | None = None
    gfp = _GFP.match(fields.get("gfp_mask", ""))
    if gfp is not None:
        gfp_mask = gfp.group(1).lower()
        if gfp.group(2):
            gfp_flags = [flag for flag in gfp.group(2).split("|") if flag]
    return Header(
        comm=line[:index],
        gfp_mask=gfp_mask,
        gfp_flags=gfp_flags,
        order=_int_field(fields.get("order")),
        oom_score_adj=_int_field(fields.get("oom_score_adj")),
        nodemask=fields.get("nodemask"),
    )


def _int_field(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return None


def parse_summary(line: str) -> Summary | None:
    body = line[line.find(SUMMARY_MARK) + len(SUMMARY_MARK) :]
    comm: str | None = None
    pid: int | None = None
    uid: int | None = None
    tail = _SUMMARY_TAIL.search(body)
    if tail is not None:
        comm, pid, uid = tail.group(1), int(tail.group(2)), int(tail.group(3))
        body = body[: tail.start()]
    elif ",task=" in body:
        # Cut short (a newline in the comm ends the line early): keep the paths clean.
        body, _, comm = body.rpartition(",task=")
    task_memcg: str | None = None
    index = body.find(",task_memcg=")
    if index >= 0:
        task_memcg = body[index + len(",task_memcg=") :]
        body = body[:index]
    oom_memcg: str | None = None
    global_oom = False
    index = body.find(",oom_memcg=")
    if index >= 0:
        oom_memcg = body[index + len(",oom_memcg=") :]
        body = body[:index]
    elif body.endswith(",global_oom"):
        global_oom = True
        body = body[: -len(",global_oom")]
    constraint: str | None = None
    cpuset: str | None = None
    for part in body.split(","):
        key, _, value = part.partition("=")
        if key == "constraint":
            constraint = value
        elif key == "cpuset":
            cpuset = value
    if constraint is None and pid is None:
        return None
    return Summary(constraint, cpuset, oom_memcg, task_memcg, global_oom, comm, pid, uid)


def parse_killed(line: str) -> Killed | None:
    index = line.find(KILLED_MARK)
    if index < 0:
        return None
    message = line[: index - 2] if index >= 2 and line[index - 2 : index] == ": " else None
    match = _KILLED.match(line, index)
    if match is not None:
        uid_text = match.group(3) if match.group(3) is not None else match.group(8)
        return Killed(
            message=message,
            pid=int(match.group(1)),
            comm=match.group(2),
            uid=_int_or_none(uid_text),
            total_vm_kb=int(match.group(4)),
            anon_rss_kb=int(match.group(5)),
            file_rss_kb=int(match.group(6)),
            shmem_rss_kb=_int_or_none(match.group(7)),
            pgtables_kb=_int_or_none(match.group(9)),
            oom_score_adj=_int_or_none(match.group(10)),
        )
    loose = _KILLED_LOOSE.match(line, index)
    if loose is not None:
        return Killed(message, int(loose.group(1)), loose.group(2), None, None, None, None, None, None, None)
    return None


def parse_killed_pid_only(line: str) -> Killed | None:
    """The pid of a kill line whose comm and figures are cut off (comm None: unknown)."""
    index = line.find(KILLED_MARK)
    match = _KILLED_PID.match(line, index) if index >= 0 else None
    if match is None:
        return None
    message = line[: index - 2] if index >= 2 and line[index - 2 : index] == ": " else None
    return Killed(message, int(match.group(1)), "", None, None, None, None, None, None, None)


def is_complete_summary(line: str) -> bool:
    return SUMMARY_MARK in line and _SUMMARY_TAIL.search(line) is not None


def is_complete_kill_line(line: str) -> bool:
    index = line.find(KILLED_MARK)
    return index >= 0 and _KILLED.match(line, index) is not None


def parse_stats_header(line: str) -> tuple[str, dict[str, int]]:
    """'Memory cgroup stats for /p:' (stats on following lines) or the inline v1 form."""
    body = line[line.find(STATS_MARK) + len(STATS_MARK) :].rstrip()
    inline = _STATS_INLINE.match(body)
    if inline is not None:
        stats = {f"{key}_kb": int(value) for key, value in _STAT_PAIR_INLINE.findall(inline.group(2))}
        return inline.group(1), stats
    if body.endswith(":"):
        body = body[:-1]
    return body, {}


def split_task_row(rest: str, columns: list[str]) -> list[str] | None:
    """Split a task row's fields after the pid; the last column (name) may contain spaces."""
    numeric = len(columns) - 1
    parts = rest.split(None, numeric)
    if len(parts) != numeric + 1:
        return None
    return parts
