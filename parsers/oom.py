"""The OOM report assembler: a state machine from kernel records to per-victim events.

Feed it records in log order; it returns finished events. It never does I/O and never reads a
clock: time comes from the records (kernel time) and from the caller (``feed(record, now)`` and
:meth:`Assembler.tick`), so tests drive it deterministically.

Every deadline runs on the caller's clock as well as on record time, so a quiet input releases
what it holds: a backlog read at start and followed by silence (a restart after kills on an idle
node) has no later record whose time or line count could release it. Anything read before the
caller's first time gets its deadline from the first tick.

Why it holds events briefly: after a kill line the kernel may still print the members of a
``memory.oom.group`` kill and, later, the ``oom_reaper`` line of the victim (possibly inside the
next report). A finished report therefore waits ``linger_seconds`` (of record time or tick time)
or ``linger_lines`` further lines before its events are released, so these can be attached.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from parsers import oom_lines as L
from parsers.cgroup import limit_scope
from parsers.events import (
    CgroupInfo,
    MemcgUsage,
    OomEvent,
    Reaped,
    Source,
    TaskRow,
    Trigger,
    Victim,
    format_time,
    make_event_id,
)
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry

ASSEMBLER_TELEMETRY = Telemetry(
    "assembler",
    (
        Count("headers", "OOM report headers (invoked oom-killer) seen"),
        Count("reports", "reports closed"),
        Count("events", "events made from reports"),
        Count("partial", "events from incomplete reports"),
        Count("summary_only_kills", "partial events made from a kill line alone"),
        Count("untrusted_records", "records user space wrote claiming to be the kernel, not assembled"),
        Count("unparsed_kill_lines", "kill lines that did not parse"),
        Count("truncated_kill_lines", "kill lines cut short"),
        Count("unparsed_task_rows", "task table rows that did not parse"),
        Count("bare_kills", "kill lines without a report header"),
        Count("group_members_exiting", "oom_group members already exiting"),
        Count("group_kill_notices", "memory.oom.group kill notices"),
        Count("group_kill_repeats", "group kill lines repeated"),
        Count("reaped_attached", "oom_reaper lines attached to their kill"),
        Count("reaped_unmatched", "oom_reaper lines matching no kill"),
        Count("pgtables_bytes_quirk", "task rows with the pgtables_bytes column quirk"),
        Count("task_rows_not_kept", "task table rows left out of events", bound="task_table_rows"),
        Count("raw_lines_not_kept", "report lines beyond the raw_lines cap", bound="report_raw_lines"),
    ),
)

MEMCG_KILL_MESSAGE = "Memory cgroup out of memory"
NO_KILL_REASON = "no kill line: report truncated or its end lost"
SUMMARY_ONLY_REASON = "no kill line: the oom-kill summary names the victim (kill line filtered out or lost)"
_CHECK_EVERY_SECONDS = 0.05
_CHECK_EVERY_LINES = 32


@dataclass(slots=True)
class _Kill:
    pid: int
    comm: str
    record: KernelRecord
    message: str | None = None
    score: int | None = None
    killed: L.Killed | None = None
    exiting: bool = False
    awaiting_killed: bool = False  # a "Kill process" line whose "Killed process" line may follow
    reaped: Reaped | None = None


@dataclass(slots=True)
class _Report:
    first: KernelRecord
    header: L.Header | None = None
    header_record: KernelRecord | None = None
    trigger_pid: int | None = None
    cpuset_comm: str | None = None
    counters: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    stats_path: str | None = None
    stats: dict[str, int] | None = None
    in_stats: bool = False
    mem_info: dict[str, int] | None = None
    in_mem_info: bool = False
    task_columns: list[str] | None = None
    tasks: list[TaskRow] = field(default_factory=list)
    task_in: tuple[str, str] | None = None
    summary: L.Summary | None = None
    kills: list[_Kill] = field(default_factory=list)
    group_path: str | None = None
    lines: int = 0
    raw: list[str] = field(default_factory=list)
    opened_tick: float | None = None


@dataclass(slots=True)
class _Held:
    event: OomEvent
    kernel_time: float | None
    held_tick: float | None
    held_line: int
    origin: SourcePosition | None  # the report's first record


class Assembler:
    """Records in, OOM events out. One instance per input stream (per boot and host)."""

    def __init__(
        self,
        *,
        linger_seconds: float = 2.5,
        linger_lines: int = 400,
        report_timeout_seconds: float = 10.0,
        max_report_lines: int = 50_000,
        max_raw_lines: int = 2_000,
        max_tasks: int = 20,
        max_held: int = 1_000,
    ) -> None:
        self.linger_seconds = linger_seconds
        self.linger_lines = linger_lines
        self.report_timeout_seconds = report_timeout_seconds
        self.max_report_lines = max_report_lines
        self.max_raw_lines = max_raw_lines
        self.max_tasks = max_tasks
        self.max_held = max_held
        self.counts: Tally = ASSEMBLER_TELEMETRY.tally()
        self._report: _Report | None = None
        self._held: list[_Held] = []
        self._line_no = 0
        self._clock: float | None = None  # kernel time of the latest record
        self._tick: float | None = None  # newest time given to tick()
        self._checked_clock = float("-inf")
        self._fragment: tuple[str, KernelRecord] | None = None
        # The previous line as far as it is known (continuation lines appended): a continuation
        # record completes it.
        self._prev_line: str | None = None
        self._prev_record: KernelRecord | None = None
        self._fragment_tick: float | None = None
        self._checked_line = 0

    # -- public -------------------------------------------------------------------------
    @property
    def needs_every_line(self) -> bool:
        """True while a report is open (its body lines carry no keyword a prefilter could find)
        and while a kill line cut at a newline in its comm waits for its continuation."""
        report = self._report
        return (report is not None and not report.kills) or self._fragment is not None

    @property
    def busy(self) -> bool:
        return self._report is not None or bool(self._held) or self._fragment is not None

    def oldest_pending_position(self) -> SourcePosition | None:
        """The first record of the oldest report not yet released as events.

        A checkpoint must not move past it: after a restart, reading resumes there and the report
        is assembled again (its events keep their ids, so consumers can drop the repeats).
        """
        if self._held:
            return self._held[0].origin
        if self._report is not None:
            return self._report.first.position
        if self._fragment is not None:
            return self._fragment[1].position  # a kill line waiting for its continuation
        return None

    def feed(self, record: KernelRecord, now: float | None = None) -> list[OomEvent]:
        """One record; ``now`` is the caller's clock (monotonic seconds, as for :meth:`tick`) at
        which it was read: deadlines of what it opens start then, not at the next tick."""
        if now is not None:
            self._tick = now
        out: list[OomEvent] = []
        if not record.trusted:
            self.counts["untrusted_records"] += 1
            return out
        if record.kernel_time is not None:
            # The latest record's time, not the largest seen: a new file or a new boot starts
            # over at a small kernel time, and must not make the reports that follow look expired.
            if self._clock is not None and record.kernel_time < self._clock:
                self._checked_clock = float("-inf")
            self._clock = record.kernel_time
        message = record.message
        if "\n" in message and not _one_line_with_newline_in_comm(message):
            for line in message.split("\n"):
                self._line(line, record, out)
        else:
            self._line(message, record, out)
        # Deadlines are checked when record time moved on or every few lines, not on every line:
        # this runs for every line of every report.
        clock = self._clock
        if (clock is not None and clock - self._checked_clock >= _CHECK_EVERY_SECONDS) or (
            self._line_no - self._checked_line >= _CHECK_EVERY_LINES
        ):
            self._checked_clock = clock if clock is not None else self._checked_clock
            self._checked_line = self._line_no
            self._expire(out)
        return out

    def tick(self, now: float) -> list[OomEvent]:
        """Advance the caller's clock (monotonic seconds); releases what has waited long enough."""
        self._tick = now
        # What was read before the caller's clock was known starts its wait now.
        report = self._report
        if report is not None and report.opened_tick is None:
            report.opened_tick = now
        for held in self._held:
            if held.held_tick is None:
                held.held_tick = now
        if self._fragment is not None and self._fragment_tick is None:
            self._fragment_tick = now
        out: list[OomEvent] = []
        self._expire(out)
        return out

    def flush(self, *, unfinished: bool = True) -> list[OomEvent]:
        """End of input: finish the open report (partial if it has no kill) and release all.

        ``unfinished=False`` (a service stopping, to resume later) keeps a report that has no
        kill line yet: it is read again after the restart and then completes, instead of leaving
        a partial event behind now.
        """
        out: list[OomEvent] = []
        if self._fragment is not None:
            line, record = self._fragment
            self._fragment = None
            self._kill_fragment(line, record, out)
        if unfinished or (self._report is not None and self._report.kills):
            self._finish(out)
        out.extend(held.event for held in self._held)
        self._held.clear()
        return out

    # -- line dispatch ---------------------------------------------------------------------
    def _line(self, line: str, record: KernelRecord, out: list[OomEvent]) -> None:
        self._line_no += 1
        prev, prev_record = self._prev_line, self._prev_record
        self._prev_line, self._prev_record = line, record
        continuation = record.continuation
        fragment = self._fragment
        if fragment is not None:
            # A kill line cut at a newline inside the comm (dmesg and journalctl print the rest as
            # a continuation line, rsyslog as a record of its own): join it with the next line.
            self._fragment = None
            joined = fragment[0] + "\n" + (line if continuation else line.lstrip())
            if L.is_complete_kill_line(joined):
                self._prev_line = joined
                self._oom_line(joined, fragment[1], out)
                return
            if continuation:
                self._fragment = (joined, fragment[1])  # a comm with several newlines
                self._prev_line = joined
                return
            self._kill_fragment(fragment[0], fragment[1], out)
        elif continuation and prev is not None and prev_record is not None:
            joined = prev + "\n" + line
            self._prev_line = joined
            if self._continue(prev, prev_record, joined, line, out):
                return
        report = self._report
        if report is not None:
            report.lines += 1
            if len(report.raw) < self.max_raw_lines:
                report.raw.append(line)
            else:
                self.counts["raw_lines_not_kept"] += 1

        keyword = "oom" in line or "OOM" in line or "Kill" in line or "Task" in line
        if keyword and self._oom_line(line, record, out):
            return
        if report is not None and not report.kills:
            self._body_line(report, line)

    def _continue(
        self, prev: str, prev_record: KernelRecord, joined: str, line: str, out: list[OomEvent]
    ) -> bool:
        """A continuation line that completes the line before it (a comm holding a newline).
        Returns True when it was consumed that way."""
        report = self._report
        if L.HEADER_MARK in line and L.HEADER_MARK not in prev:
            # "<comm> invoked oom-killer:" with the comm's newline: the header starts a line up.
            return self._oom_line(joined, prev_record, out)
        if (
            report is not None
            and report.summary is not None
            and not report.kills
            and prev.startswith(L.SUMMARY_MARK)
            and not L.is_complete_summary(prev)
        ):
            summary = L.parse_summary(joined)
            if summary is not None:
                report.summary = summary  # the same summary, now with the whole comm
                return True
        if (
            ("Kill process " in prev and L.KILL_PROCESS.match(prev) is None)
            or ("OOM victim " in prev and L.VICTIM_EXITING.match(prev) is None)
            or (prev.startswith("oom_reaper: ") and L.REAPED.match(prev) is None)
        ):
            return self._oom_line(joined, prev_record, out)
        if report is not None and report.tasks and prev.lstrip().startswith("["):
            row = report.tasks[-1]
            if L.TASK_ROW.match(prev.strip()) is not None:
                report.tasks[-1] = dataclasses.replace(row, name=row.name + "\n" + line.rstrip())
                return True
        return False

    def _oom_line(self, line: str, record: KernelRecord, out: list[OomEvent]) -> bool:
        """Lines that start, end or extend a report. Returns True when the line was consumed."""
        if L.HEADER_MARK in line:
            header = L.parse_header(line)
            if header is not None:
                self._finish(out)
                opened = self._open(record, line)
                opened.header = header
                opened.header_record = record
                self.counts["headers"] += 1
                return True
        if L.KILLED_MARK in line:
            if L.is_complete_kill_line(line):
                killed = L.parse_killed(line)
                assert killed is not None
                self._on_killed(killed, record, line, out)
                return True
            if L.parse_killed_pid_only(line) is not None:
                # Cut or reshaped: the next line may be its continuation (a comm holding a
                # newline, even one that looks complete such as "(a)" + "b) total-vm:...").
                self._fragment = (line, record)
                self._fragment_tick = self._tick
                return True
            self.counts["unparsed_kill_lines"] += 1
        if "Kill process " in line:
            match = L.KILL_PROCESS.match(line)
            if match is not None:
                kill = _Kill(
                    pid=int(match.group(2)), comm=match.group(3), record=record, message=match.group(1),
                    score=int(match.group(4)), awaiting_killed=True,
                )  # fmt: skip
                self._add_kill(kill, line, out)
                return True
        if "OOM victim " in line:
            match = L.VICTIM_EXITING.match(line)
            if match is not None:
                report = self._report
                if report is not None and report.kills and report.group_path is not None:
                    # A group member already on its way out was not killed now: no event.
                    self.counts["group_members_exiting"] += 1
                    return True
                kill = _Kill(
                    pid=int(match.group(2)), comm=match.group(3), record=record,
                    message=match.group(1), exiting=True,
                )  # fmt: skip
                self._add_kill(kill, line, out)
                return True
        if line.startswith("oom_reaper: "):
            match = L.REAPED.match(line)
            if match is not None:
                self._on_reaped(match, record)
                return True
        if L.SUMMARY_MARK in line and line.lstrip().startswith(L.SUMMARY_MARK):
            summary = L.parse_summary(line)
            if summary is not None:
                report = self._report
                if report is None or report.kills or report.summary is not None:
                    # The kernel prints one summary per chosen victim: a summary after a kill line
                    # or after another summary starts a new report (its header lost or filtered),
                    # however close the two are.
                    self._finish(out)
                    report = self._open(record, line)
                report.summary = summary
                return True
        if line.startswith("Tasks in "):
            match = L.GROUP_KILL.match(line)
            if match is not None:
                report = self._report
                if report is None:
                    report = self._open(record, line)
                report.group_path = match.group(1)
                self.counts["group_kill_notices"] += 1
                return True
        if line.startswith("Task in "):
            match = L.TASK_IN.match(line)
            if match is not None:
                report = self._report
                if report is None or report.kills:
                    self._finish(out)
                    report = self._open(record, line)
                report.task_in = (match.group(1), match.group(2))
                return True
        return False

    def _body_line(self, report: _Report, line: str) -> None:
        """Lines that only mean something inside an open report."""
        stripped = line.strip()
        if not stripped:
            return
        first = stripped[0]
        if first == "[":
            if report.task_columns is not None:
                row = L.TASK_ROW.match(stripped)
                if row is not None:
                    self._task_row(report, int(row.group(1)), row.group(2))
                    return
            header = L.TASK_HEADER.match(stripped)
            if header is not None:
                report.task_columns = header.group(1).split()
                report.in_stats = report.in_mem_info = False
                return
            return
        if report.in_stats:
            stat = L.STAT_LINE.match(line)
            if stat is not None:
                if report.stats is not None:
                    report.stats[stat.group(1)] = int(stat.group(2))
                return
            report.in_stats = False
        if report.in_mem_info:
            pairs = L.MEM_INFO_PAIR.findall(stripped)
            if pairs and not stripped.startswith("Node"):
                assert report.mem_info is not None
                for key, value in pairs:
                    report.mem_info.setdefault(key, int(value))
                return
            report.in_mem_info = False
        if stripped.startswith("CPU: "):
            cpu = L.CPU_LINE.match(stripped)
            if cpu is not None and report.trigger_pid is None:
                report.trigger_pid = int(cpu.group(3))
            return
        if "usage " in stripped:
            counter = L.COUNTER_LINE.match(stripped)
            if counter is not None:
                report.counters.setdefault(
                    counter.group(1), (int(counter.group(2)), int(counter.group(3)), int(counter.group(4)))
                )
                return
        if stripped.startswith(L.STATS_MARK):
            path, stats = L.parse_stats_header(stripped)
            if report.stats_path is None:
                # v1 dumps one block per descendant cgroup: the first is the one that hit its limit.
                report.stats_path = path
                report.stats = stats
                report.in_stats = not stats
            else:
                report.in_stats = False
            return
        if stripped == L.TASK_STATE_MARK:
            return
        if stripped.startswith(L.MEM_INFO_MARK):
            report.mem_info = {}
            report.in_mem_info = True
            return
        if " cpuset=" in stripped and " mems_allowed=" in stripped:
            cpuset = L.CPUSET_LINE.match(stripped)
            if cpuset is not None:
                report.cpuset_comm = cpuset.group(1)

    def _task_row(self, report: _Report, pid: int, rest: str) -> None:
        columns = report.task_columns
        assert columns is not None
        parts = L.split_task_row(rest, columns)
        if parts is None:
            self.counts["unparsed_task_rows"] += 1
            return
        values: dict[str, int | None] = {}
        for name, text in zip(columns[:-1], parts[:-1], strict=True):
            try:
                values[name] = int(text)
            except ValueError:
                values[name] = None
        report.tasks.append(
            TaskRow(
                pid=pid,
                uid=values.get("uid"),
                tgid=values.get("tgid"),
                total_vm_pages=values.get("total_vm"),
                rss_pages=values.get("rss"),
                rss_anon_pages=values.get("rss_anon"),
                rss_file_pages=values.get("rss_file"),
                rss_shmem_pages=values.get("rss_shmem"),
                pgtables_bytes=values.get("pgtables_bytes"),
                nr_ptes=values.get("nr_ptes"),
                swapents=values.get("swapents"),
                oom_score_adj=values.get("oom_score_adj"),
                name=parts[-1].rstrip(),
            )
        )

    # -- kills -----------------------------------------------------------------------------
    def _kill_fragment(self, line: str, record: KernelRecord, out: list[OomEvent]) -> None:
        """A kill line that never completed: its pid (and comm, if closed) still make an event."""
        killed = L.parse_killed(line) or L.parse_killed_pid_only(line)
        if killed is None:
            return
        self.counts["truncated_kill_lines"] += 1
        self._on_killed(killed, record, line, out)

    def _on_killed(self, killed: L.Killed, record: KernelRecord, line: str, out: list[OomEvent]) -> None:
        report = self._report
        if report is not None and report.kills:
            last = report.kills[-1]
            if last.awaiting_killed:
                # "Kill process A ... or sacrifice child" is followed by "Killed process B" (A or a child).
                last.awaiting_killed = False
                if last.pid != killed.pid:
                    last.score = None  # the score was the parent's
                last.pid, last.comm, last.killed, last.record = killed.pid, killed.comm, killed, record
                if killed.message:
                    last.message = killed.message
                return
            if report.group_path is not None:
                if any(kill.pid == killed.pid for kill in report.kills):
                    self.counts["group_kill_repeats"] += 1
                    return
                member = _Kill(killed.pid, killed.comm, record, message=killed.message, killed=killed)
                report.kills.append(member)
                return
        kill = _Kill(killed.pid, killed.comm, record, message=killed.message, killed=killed)
        self._add_kill(kill, line, out)

    def _add_kill(self, kill: _Kill, line: str, out: list[OomEvent]) -> None:
        report = self._report
        summary = report.summary if report is not None else None
        if (
            report is None
            or report.kills
            or (summary is not None and summary.pid is not None and summary.pid != kill.pid)
        ):
            # A kill with no open report: the header was rate-limited (OOM storm) or lost. The
            # same when the open report's summary names another victim: that report's kill line
            # was lost or filtered out, and this kill is a report of its own.
            self._finish(out)
            report = self._open(kill.record, line)
            self.counts["bare_kills"] += 1
        report.kills.append(kill)

    def _on_reaped(self, match: re.Match[str], record: KernelRecord) -> None:
        pid = int(match.group(1))
        reaped = Reaped(
            anon_rss_kb=int(match.group(3)),
            file_rss_kb=int(match.group(4)),
            shmem_rss_kb=int(match.group(5)) if match.group(5) is not None else None,
            kernel_time=record.kernel_time,
        )
        report = self._report
        if report is not None:
            for kill in report.kills:
                if kill.pid == pid and kill.reaped is None:
                    kill.reaped = reaped
                    self.counts["reaped_attached"] += 1
                    return
        for held in reversed(self._held):
            victim = held.event.victim
            if victim is not None and victim.pid == pid and held.event.reaped is None:
                held.event = dataclasses.replace(held.event, reaped=reaped)
                self.counts["reaped_attached"] += 1
                return
        self.counts["reaped_unmatched"] += 1

    # -- report lifecycle ------------------------------------------------------------------
    def _open(self, record: KernelRecord, line: str) -> _Report:
        report = self._report = _Report(first=record, opened_tick=self._tick, lines=1)
        report.raw.append(line)
        return report

    def _finish(self, out: list[OomEvent]) -> None:
        report = self._report
        if report is None:
            return
        self._report = None
        self.counts["reports"] += 1
        for event in self._events(report):
            self.counts["events"] += 1
            if event.partial:
                self.counts["partial"] += 1
                if event.victim is not None:
                    self.counts["summary_only_kills"] += 1
            self._held.append(
                _Held(event, event.kernel_time, self._tick, self._line_no, report.first.position)
            )
        while len(self._held) > self.max_held:
            out.append(self._held.pop(0).event)

    def _expire(self, out: list[OomEvent]) -> None:
        fragment = self._fragment
        if (
            fragment is not None
            and self._fragment_tick is not None
            and self._tick is not None
            and self._tick - self._fragment_tick > self.linger_seconds
        ):
            # Its continuation line never came (input cut, or nothing written since).
            self._fragment = None
            self._kill_fragment(fragment[0], fragment[1], out)
        report = self._report
        if report is not None and self._report_expired(report):
            self._finish(out)
        if not self._held:
            return
        released = 0
        for held in self._held:
            if not self._held_expired(held):
                break
            out.append(held.event)
            released += 1
        if released:
            del self._held[:released]

    def _report_expired(self, report: _Report) -> bool:
        if report.kills:
            limit, lines = self.linger_seconds, self.linger_lines
            start = report.kills[-1].record.kernel_time
        else:
            limit, lines = self.report_timeout_seconds, self.max_report_lines
            start = report.first.kernel_time
        if report.lines > lines:
            return True
        if start is not None and self._clock is not None and self._clock - start > limit:
            return True
        return (
            report.opened_tick is not None
            and self._tick is not None
            and self._tick - report.opened_tick > limit
        )

    def _held_expired(self, held: _Held) -> bool:
        if self._line_no - held.held_line > self.linger_lines:
            return True
        if (
            held.kernel_time is not None
            and self._clock is not None
            and self._clock - held.kernel_time > self.linger_seconds
        ):
            return True
        return (
            held.held_tick is not None
            and self._tick is not None
            and self._tick - held.held_tick > self.linger_seconds
        )

    # -- event building --------------------------------------------------------------------
    def _events(self, report: _Report) -> list[OomEvent]:
        if not report.kills:
            return [self._event(report, None, first_victim=True)]
        events: list[OomEvent] = []
        for index, kill in enumerate(report.kills):
            events.append(self._event(report, kill, first_victim=index == 0))
        return events

    def _event(self, report: _Report, kill: _Kill | None, *, first_victim: bool) -> OomEvent:
        header = report.header
        summary = report.summary
        record = kill.record if kill is not None else (report.header_record or report.first)

        trigger: Trigger | None = None
        if header is not None:
            trigger = Trigger(
                pid=report.trigger_pid,
                comm=header.comm,
                gfp_mask=header.gfp_mask,
                gfp_flags=header.gfp_flags,
                order=header.order,
                oom_score_adj=header.oom_score_adj,
            )

        victim: Victim | None = None
        if kill is None and summary is not None and summary.pid is not None:
            # The kernel prints the summary only once it has chosen this victim: it is a kill.
            victim = Victim(pid=summary.pid, comm=summary.comm, uid=summary.uid)
        if kill is not None:
            killed = kill.killed
            victim = Victim(
                pid=kill.pid,
                comm=kill.comm or None,
                uid=killed.uid if killed is not None else None,
                oom_score_adj=killed.oom_score_adj if killed is not None else None,
                total_vm_kb=killed.total_vm_kb if killed is not None else None,
                anon_rss_kb=killed.anon_rss_kb if killed is not None else None,
                file_rss_kb=killed.file_rss_kb if killed is not None else None,
                shmem_rss_kb=killed.shmem_rss_kb if killed is not None else None,
                pgtables_kb=killed.pgtables_kb if killed is not None else None,
                score=kill.score,
                already_exiting=kill.exiting,
            )
            if victim.uid is None and summary is not None and summary.pid == kill.pid:
                victim = dataclasses.replace(victim, uid=summary.uid)
            row = next((row for row in report.tasks if row.pid == kill.pid), None)
            if (
                row is not None
                and victim.pgtables_kb is not None
                and victim.pgtables_kb > 0
                and victim.pgtables_kb == row.pgtables_bytes
            ):
                # Kernels 5.4.0-5.4.8 printed pgtables in bytes labelled kB (fixed by 941f762bcb27);
                # the victim's task row, in bytes, proves which one this line printed.
                self.counts["pgtables_bytes_quirk"] += 1
                victim = dataclasses.replace(victim, pgtables_kb=victim.pgtables_kb // 1024)
            if row is not None and (victim.uid is None or victim.oom_score_adj is None):
                # Older kill lines lack uid and oom_score_adj; the victim's task table row has them.
                victim = dataclasses.replace(
                    victim,
                    uid=victim.uid if victim.uid is not None else row.uid,
                    oom_score_adj=victim.oom_score_adj
                    if victim.oom_score_adj is not None
                    else row.oom_score_adj,
                )

        # The summary and "Task in" lines describe the chosen victim only; group members get the
        # group's cgroup as the text says nothing more precise about them.
        task_memcg: str | None = None
        oom_memcg: str | None = None
        global_oom = False
        if summary is not None:
            global_oom = summary.global_oom
            oom_memcg = summary.oom_memcg
            if kill is None or summary.pid is None or summary.pid == kill.pid or first_victim:
                task_memcg = summary.task_memcg
        if report.task_in is not None:
            if task_memcg is None and (first_victim or kill is None):
                task_memcg = report.task_in[0]
            if oom_memcg is None:
                oom_memcg = report.task_in[1]
        if oom_memcg is None and report.stats_path is not None and not global_oom:
            oom_memcg = report.stats_path  # memcg reports dump the stats of the memcg that hit its limit
        identity_path = task_memcg if task_memcg is not None else report.group_path

        kill_message = kill.message if kill is not None else None
        constraint = summary.constraint if summary is not None else None
        if constraint is None and kill_message == MEMCG_KILL_MESSAGE:
            constraint = "CONSTRAINT_MEMCG"
        if (
            not global_oom
            and summary is None
            and kill_message is not None
            and kill_message.startswith("Out of memory")
            and oom_memcg is None
        ):
            global_oom = True  # the kernel prints this message only when no memcg limit fired
        cgroup = CgroupInfo.identified(
            identity_path,
            task_memcg=task_memcg,
            oom_memcg=oom_memcg,
            limit_scope=limit_scope(identity_path, oom_memcg, global_oom=global_oom),
            source="report" if identity_path is not None else "none",
            oom_group=report.group_path,
        )

        memcg: MemcgUsage | None = None
        counters = report.counters
        if counters:
            memory = counters.get("memory")
            memsw = counters.get("memory+swap")
            swap = counters.get("swap")
            kmem = counters.get("kmem")
            memcg = MemcgUsage(
                usage_kb=memory[0] if memory else None,
                limit_kb=memory[1] if memory else None,
                failcnt=memory[2] if memory else None,
                memsw_usage_kb=memsw[0] if memsw else None,
                memsw_limit_kb=memsw[1] if memsw else None,
                swap_usage_kb=swap[0] if swap else None,
                swap_limit_kb=swap[1] if swap else None,
                kmem_usage_kb=kmem[0] if kmem else None,
                kmem_limit_kb=kmem[1] if kmem else None,
            )

        tasks: list[TaskRow] | None = None
        tasks_total: int | None = None
        if report.task_columns is not None:
            tasks_total = len(report.tasks)
            tasks = sorted(report.tasks, key=lambda row: row.rss_pages or 0, reverse=True)[: self.max_tasks]
            self.counts["task_rows_not_kept"] += tasks_total - len(tasks)  # tasks_total says so too

        partial = kill is None
        partial_reason: str | None = None
        if partial:
            partial_reason = SUMMARY_ONLY_REASON if victim is not None else NO_KILL_REASON
        position = record.position
        event_id = make_event_id(
            boot_id=record.boot_id,
            host=record.host,
            kernel_time=record.kernel_time,
            wall_time=record.wall_time,
            pid=kill.pid if kill is not None else None,
            fallback=_position_key(record),
        )
        return OomEvent(
            event_id=event_id,
            time=format_time(record.wall_time),
            time_source=record.time_source if record.wall_time is not None else None,
            kernel_time=record.kernel_time,
            host=record.host,
            boot_id=record.boot_id,
            victim=victim,
            trigger=trigger,
            constraint=constraint,
            cgroup=cgroup,
            memcg=memcg,
            tasks=tasks,
            tasks_total=tasks_total,
            group_kill=report.group_path is not None,
            partial=partial,
            partial_reason=partial_reason,
            kill_message=kill_message,
            reaped=kill.reaped if kill is not None else None,
            memcg_stats=report.stats if report.stats else None,
            mem_info=report.mem_info if report.mem_info else None,
            source=Source(
                kind=position.kind if position is not None else "unknown",
                format=record.format,
                position=position.to_json() if position is not None else None,
                report_position=report.first.position.to_json() if report.first.position else None,
            ),
            raw_lines=list(report.raw) if partial else None,
            raw_lines_total=report.lines if partial else None,
        )


def _one_line_with_newline_in_comm(message: str) -> bool:
    """A kill, reaper or header record whose process name holds a newline (kmsg \\x0a, journald
    JSON): one line, not several. Multi-line records otherwise are old memcg stat dumps."""
    first, _, _rest = message.partition("\n")
    if L.KILLED_MARK in first and not L.is_complete_kill_line(first):
        return L.is_complete_kill_line(message)
    if L.SUMMARY_MARK in first and not L.is_complete_summary(first):
        return L.is_complete_summary(message)
    if (
        L.HEADER_MARK in message
        and L.HEADER_MARK not in first
        and "\n" not in message[message.rfind(L.HEADER_MARK) :]
    ):
        return "Memory cgroup stats" not in message
    return False


def _position_key(record: KernelRecord) -> str | None:
    position = record.position
    if position is None:
        return None
    if position.seq is not None:
        return f"seq:{position.seq}"
    if position.cursor is not None:
        return f"cursor:{position.cursor}"
    if position.offset is not None:
        return f"{position.path or ''}:{position.offset}"
    return None
