"""pid -> memory cgroup index, so a bare kill line is still attributed to its cgroup.

The kernel rate-limits the report header and the ``oom-kill:`` summary (the lines that carry
cgroup paths) but never the kill line, so in an OOM storm most kills name only a pid and comm.
By the time the line is read the process is dead and ``/proc/<pid>/cgroup`` is gone, so the index
is built ahead of time: a full scan of /proc every ``refresh_seconds``, and an immediate scan as
soon as any OOM line is seen (the next victims of a storm are usually still alive then).

A second signal is the cgroups' own OOM kill counters (v1 ``memory.oom_control`` ``oom_kill``,
v2 ``memory.events`` ``oom_kill``): when a kill line's pid is not in the index and exactly one
watched cgroup's counter rose since the last look, that cgroup is the answer
(``cgroup.source = "memory_events"``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace

from parsers.cgroup import limit_scope
from parsers.events import CgroupInfo, OomEvent
from parsers.telemetry import Count, Tally, Telemetry

PID_INDEX_TELEMETRY = Telemetry(
    "pid_index",
    (
        Count("scans", "scans of /proc"),
        Count("scan_errors", "scans that failed"),
        Count("truncated_scans", "scans cut at the process limit"),
        Count("attributed_pid_index", "kills attributed to a cgroup by the pid index"),
        Count("attributed_memory_events", "kills attributed by memory.events"),
        Count("unattributed", "kills left without a cgroup"),
    ),
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    cgroup: str  # memory controller path, as the kernel prints it in task_memcg
    comm: str
    read_at: float = 0.0  # when /proc was read for it (scan clock)


def read_memory_cgroup(proc: str, pid: int) -> str | None:
    """The memory cgroup of a process from /proc/<pid>/cgroup (v1 memory line, else v2 0:: line)."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    unified: str | None = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            return path
        if hierarchy == "0" and controllers == "":
            unified = path
    return unified


def _read_comm(proc: str, pid: int) -> str | None:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="backslashreplace") as handle:
            return handle.read().rstrip("\n")
    except OSError:
        return None


class PidIndex:
    """The index and its refresh policy. Synchronous and cheap; the pipeline calls it from a task."""

    def __init__(
        self,
        *,
        proc: str = "/proc",
        cgroup_root: str = "/sys/fs/cgroup",
        refresh_seconds: float = 2.0,
        watch_prefixes: tuple[str, ...] = ("/kubepods", "/kubepods.slice"),
        max_entries: int = 200_000,
        reread_seconds: float = 30.0,
    ) -> None:
        self.proc = proc
        self.cgroup_root = cgroup_root
        self.refresh_seconds = refresh_seconds
        self.watch_prefixes = watch_prefixes
        self.max_entries = max_entries
        # Known pids are re-read only this often: a container's processes do not change cgroup,
        # and two file reads per process per scan dominate the cost (about 55 us a process).
        # A pid reused in between is caught by the comm check in attribute().
        self.reread_seconds = reread_seconds
        self.counts: Tally = PID_INDEX_TELEMETRY.tally()
        self.scan_seconds_total = 0.0
        self._entries: dict[int, IndexEntry] = {}
        self._alive: dict[int, IndexEntry] = {}
        self._last_scan = float("-inf")
        self._oom_counters: dict[str, int] = {}
        self._risen: list[str] = []

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, pid: int) -> IndexEntry | None:
        return self._entries.get(pid)

    def due(self, now: float) -> bool:
        return now - self._last_scan >= self.refresh_seconds

    def scan(self, now: float | None = None) -> None:
        """Rebuild the index from /proc. Entries of exited pids are kept until the next scan
        replaces them, because the kill line of a just-exited pid is exactly what we look up."""
        started = time.perf_counter()
        now = now if now is not None else time.monotonic()
        known = self._alive
        fresh: dict[int, IndexEntry] = {}
        try:
            names = os.listdir(self.proc)
        except OSError as error:
            self.counts["scan_errors"] += 1
            log.warning("pid index: cannot list %s: %s", self.proc, error)
            return
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            previous = known.get(pid)
            if previous is not None and now - previous.read_at < self.reread_seconds:
                fresh[pid] = previous
                continue
            cgroup = read_memory_cgroup(self.proc, pid)
            if cgroup is None:
                continue
            comm = _read_comm(self.proc, pid)
            if comm is None:
                continue
            fresh[pid] = IndexEntry(cgroup, comm, now)
            if len(fresh) >= self.max_entries:
                self.counts["truncated_scans"] += 1
                break
        # Keep pids that were alive at the previous scan one more round: their kill lines may
        # still be on their way. Older dead pids are dropped so the index stays bounded.
        merged = dict(fresh)
        for pid, entry in self._alive.items():
            merged.setdefault(pid, entry)
        self._alive = fresh
        self._entries = merged
        self._last_scan = now
        self.scan_seconds_total += time.perf_counter() - started
        self.counts["scans"] += 1
        self._poll_oom_counters()

    def _poll_oom_counters(self) -> None:
        """Read the OOM kill counters of the watched cgroups; remember which rose."""
        risen: list[str] = []
        for path in self._watched_cgroups():
            count = self._oom_kill_count(path)
            if count is None:
                continue
            previous = self._oom_counters.get(path)
            self._oom_counters[path] = count
            if previous is not None and count > previous:
                risen.append(path)
        self._risen = risen

    def _watched_cgroups(self) -> list[str]:
        paths: list[str] = []
        for root in (f"{self.cgroup_root}/memory", f"{self.cgroup_root}/unified", self.cgroup_root):
            for prefix in self.watch_prefixes:
                base = root + prefix
                if not os.path.isdir(base):
                    continue
                for directory, _subdirs, files in os.walk(base):
                    if "memory.oom_control" in files or "memory.events" in files:
                        paths.append(directory)
        return paths

    @staticmethod
    def _oom_kill_count(directory: str) -> int | None:
        for name in ("memory.oom_control", "memory.events"):
            try:
                with open(os.path.join(directory, name), encoding="ascii", errors="replace") as handle:
                    for line in handle:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except (OSError, ValueError):
                continue
        return None

    def _cgroup_of_counter(self, directory: str) -> str:
        for root in (f"{self.cgroup_root}/memory", f"{self.cgroup_root}/unified", self.cgroup_root):
            if directory.startswith(root + "/"):
                return directory[len(root) :]
        return directory

    def attribute(self, event: OomEvent) -> OomEvent:
        """Fill the cgroup of an event whose report did not name one."""
        victim = event.victim
        if event.cgroup.source != "none" or victim is None or victim.pid is None:
            return event
        entry = self._entries.get(victim.pid)
        if entry is not None and (victim.comm is None or entry.comm == victim.comm):
            self.counts["attributed_pid_index"] += 1
            return self._with_cgroup(event, entry.cgroup, "pid_index")
        leaf = self._single_risen_leaf()
        if leaf is not None:
            self.counts["attributed_memory_events"] += 1
            return self._with_cgroup(event, leaf, "memory_events")
        self.counts["unattributed"] += 1
        return event

    def _single_risen_leaf(self) -> str | None:
        """The one cgroup whose counter rose, when all risen counters lie on one ancestor chain
        (the kernel counts a kill in the victim's memcg and every ancestor)."""
        if not self._risen:
            return None
        paths = sorted((self._cgroup_of_counter(path) for path in self._risen), key=len)
        deepest = paths[-1]
        if all(deepest == path or deepest.startswith(path.rstrip("/") + "/") for path in paths):
            return deepest
        return None

    @staticmethod
    def _with_cgroup(event: OomEvent, path: str, source: str) -> OomEvent:
        old = event.cgroup
        cgroup = CgroupInfo.identified(
            path,
            task_memcg=path,
            oom_memcg=old.oom_memcg,
            limit_scope=old.limit_scope
            if old.limit_scope is not None
            else limit_scope(path, old.oom_memcg, global_oom=False),
            source=source,
            oom_group=old.oom_group,
        )
        return replace(event, cgroup=cgroup)
