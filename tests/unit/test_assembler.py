"""The report assembler on every kernel generation's line shapes."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import pytest

from parsers.events import OomEvent
from parsers.oom import Assembler
from parsers.records import KernelRecord, SourcePosition

POD = "8dc3c9f0-6a5a-4d1c-9f9f-0b2f1e6c3a11"
CID = "4f1b2c3d" * 8
POD_PATH = f"/kubepods/burstable/pod{POD}"
CONTAINER_PATH = f"{POD_PATH}/{CID}"


def records(lines: Iterable[str], start: float = 100.0, step: float = 0.000010) -> list[KernelRecord]:
    out = []
    for index, line in enumerate(lines):
        out.append(
            KernelRecord(
                message=line,
                format="dmesg",
                kernel_time=round(start + index * step, 6),
                boot_id="b" * 32,
                position=SourcePosition(kind="file", offset=index),
            )
        )
    return out


def run(lines: Iterable[str], assembler: Assembler | None = None) -> list[OomEvent]:
    asm = assembler or Assembler()
    events: list[OomEvent] = []
    for record in records(lines):
        events.extend(asm.feed(record))
    events.extend(asm.flush())
    return events


def modern_report(pid: int = 2031, comm: str = "python3", adj: int = 0) -> list[str]:
    return [
        f"{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj={adj}",
        f"CPU: 1 UID: 0 PID: {pid} Comm: {comm} Not tainted 6.18.44 #1 PREEMPT(none) ",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x57/0x80",
        " </TASK>",
        "memory: usage 65536kB, limit 65536kB, failcnt 332",
        "memory+swap: usage 65536kB, limit 9007199254740988kB, failcnt 0",
        "kmem: usage 224kB, limit 9007199254740988kB, failcnt 0",
        f"Memory cgroup stats for {CONTAINER_PATH}:",
        "cache 16384",
        "rss 66830336",
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents"
        " oom_score_adj name",
        f"[   {pid}]     0  {pid}    18790    17939    16288     1651         0   188416        0"
        f"             {adj} {comm}",
        "[    900]     0   900     1000       10       10        0         0    40960        0"
        "             0 sleep",
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
        f"oom_memcg={CONTAINER_PATH},task_memcg={CONTAINER_PATH},task={comm},pid={pid},uid=0",
        f"Memory cgroup out of memory: Killed process {pid} ({comm}) total-vm:75160kB, anon-rss:65152kB, "
        f"file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:184kB oom_score_adj:{adj}",
    ]


def test_modern_report_all_fields() -> None:
    [event] = run(modern_report())
    assert event.victim is not None and event.trigger is not None and event.memcg is not None
    assert (event.victim.pid, event.victim.comm, event.victim.uid) == (2031, "python3", 0)
    assert event.victim.anon_rss_kb == 65152 and event.victim.file_rss_kb == 6604
    assert event.victim.shmem_rss_kb == 0 and event.victim.pgtables_kb == 184
    assert event.trigger.pid == 2031 and event.trigger.gfp_mask == "0xcc0"
    assert event.trigger.gfp_flags == ["GFP_KERNEL"] and event.trigger.order == 0
    assert event.constraint == "CONSTRAINT_MEMCG"
    assert event.cgroup.task_memcg == CONTAINER_PATH and event.cgroup.oom_memcg == CONTAINER_PATH
    assert event.cgroup.pod_uid == POD and event.cgroup.container_id == CID
    assert event.cgroup.qos_class == "Burstable" and event.cgroup.driver == "cgroupfs"
    assert event.cgroup.limit_scope == "container" and event.cgroup.source == "report"
    assert (event.memcg.usage_kb, event.memcg.limit_kb, event.memcg.failcnt) == (65536, 65536, 332)
    assert event.memcg.memsw_limit_kb == 9007199254740988 and event.memcg.kmem_usage_kb == 224
    assert event.tasks is not None and [t.pid for t in event.tasks] == [2031, 900]
    assert event.tasks[0].rss_anon_pages == 16288 and event.tasks_total == 2
    assert event.memcg_stats == {"cache": 16384, "rss": 66830336}
    assert event.kernel_time == pytest.approx(100.000170)
    assert not event.partial and not event.group_kill


def test_bare_kill_lines_of_a_storm_each_become_events() -> None:
    lines = modern_report()
    for index in range(20):
        lines.append(
            f"Memory cgroup out of memory: Killed process {3000 + index} (w{index}) total-vm:1000kB, "
            f"anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:40kB oom_score_adj:999"
        )
    events = run(lines)
    assert [e.victim.pid for e in events if e.victim] == [2031, *range(3000, 3020)]
    bare = events[1]
    assert bare.trigger is None and bare.cgroup.task_memcg is None and bare.cgroup.source == "none"
    assert bare.constraint == "CONSTRAINT_MEMCG" and not bare.partial
    assert bare.victim is not None and bare.victim.uid == 1000 and bare.victim.oom_score_adj == 999
    assert len({e.event_id for e in events}) == 21


def test_noise_and_earlier_reaper_lines_between_report_lines() -> None:
    lines = modern_report()
    noisy = []
    for index, line in enumerate(lines):
        noisy.append(line)
        if index % 3 == 0:
            noisy.append("IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready")
        if index == 8:
            noisy.append(
                "oom_reaper: reaped process 1777 (old), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
            )
    [event] = run(noisy)
    assert event.victim is not None and event.victim.pid == 2031
    assert event.tasks_total == 2 and event.reaped is None


def test_reaper_line_attaches_to_earlier_kill_even_inside_next_report() -> None:
    first = modern_report(pid=2031)
    second = modern_report(pid=4040, comm="java")
    reaper = "oom_reaper: reaped process 2031 (python3), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
    events = run(first + second[:5] + [reaper] + second[5:])
    assert [e.victim.pid for e in events if e.victim] == [2031, 4040]
    assert events[0].reaped is not None and events[0].reaped.anon_rss_kb == 0
    assert events[1].reaped is None


def test_group_kill_one_event_per_process_repeat_counted_once() -> None:
    v2 = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + POD.replace("-", "_") + ".slice"
    container = f"{v2}/cri-containerd-{CID}.scope"
    lines = [
        "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=937",
        "CPU: 0 PID: 10 Comm: app Not tainted 5.15.0 #1",
        "memory: usage 102400kB, limit 102400kB, failcnt 7",
        "swap: usage 0kB, limit 0kB, failcnt 0",
        f"Memory cgroup stats for {container}:",
        "anon 104000000",
        "file 0",
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={CID},mems_allowed=0,"
        f"oom_memcg={container},task_memcg={container},task=app,pid=10,uid=0",
        "Memory cgroup out of memory: Killed process 10 (app) total-vm:200000kB, anon-rss:100000kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:300kB oom_score_adj:937",
        f"Tasks in {container} are going to be killed due to memory.oom.group set",
        "Memory cgroup out of memory: Killed process 10 (app) total-vm:200000kB, anon-rss:100000kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:300kB oom_score_adj:937",
        "Memory cgroup out of memory: Killed process 11 (helper) total-vm:1000kB, anon-rss:500kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:937",
        "Memory cgroup out of memory: Killed process 12 (sh) total-vm:900kB, anon-rss:100kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:937",
    ]
    events = run(lines)
    assert [e.victim.pid for e in events if e.victim] == [10, 11, 12]
    assert all(e.group_kill and e.cgroup.oom_group == container for e in events)
    assert all(e.cgroup.container_id == CID and e.cgroup.driver == "systemd" for e in events)
    assert events[0].cgroup.task_memcg == container and events[1].cgroup.task_memcg is None
    assert events[0].memcg is not None and events[0].memcg.swap_limit_kb == 0


def test_pre_5_1_kill_process_and_sacrifice_child() -> None:
    lines = [
        "java invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=0",
        "java cpuset=/ mems_allowed=0",
        "CPU: 3 PID: 4242 Comm: java Not tainted 3.10.0-1160.el7.x86_64 #1",
        f"Task in {CONTAINER_PATH} killed as a result of limit of {POD_PATH}",
        "memory: usage 524288kB, limit 524288kB, failcnt 11",
        f"Memory cgroup stats for {POD_PATH}: cache:0KB rss:524288KB rss_huge:0KB",
        f"Memory cgroup stats for {CONTAINER_PATH}: cache:0KB rss:524000KB rss_huge:0KB",
        "[ pid ]   uid  tgid total_vm      rss nr_ptes swapents oom_score_adj name",
        "[ 4242]  1000  4242   300000   131000     400        0           999 java",
        "Memory cgroup out of memory: Kill process 4242 (java) score 1990 or sacrifice child",
        "Killed process 4250 (java-child), UID 1000, total-vm:100kB, anon-rss:50kB, file-rss:4kB, shmem-rss:0kB",
    ]
    [event] = run(lines)
    assert event.victim is not None and event.trigger is not None
    assert (event.victim.pid, event.victim.comm, event.victim.uid) == (4250, "java-child", 1000)
    assert event.victim.score is None  # the score was the parent's
    assert event.trigger.gfp_mask == "0xd0" and event.trigger.gfp_flags is None and event.trigger.pid == 4242
    assert event.cgroup.task_memcg == CONTAINER_PATH and event.cgroup.oom_memcg == POD_PATH
    assert event.cgroup.limit_scope == "pod" and event.constraint == "CONSTRAINT_MEMCG"
    assert event.memcg_stats == {"cache_kb": 0, "rss_kb": 524288, "rss_huge_kb": 0}
    assert event.tasks is not None and event.tasks[0].nr_ptes == 400 and event.tasks[0].oom_score_adj == 999


def test_kill_process_followed_by_same_pid_merges() -> None:
    lines = [
        "Out of memory: Kill process 77 (mysqld) score 900 or sacrifice child",
        "Killed process 77 (mysqld) total-vm:2000kB, anon-rss:1500kB, file-rss:10kB",
        "Out of memory: Kill process 78 (mysqld) score 800 or sacrifice child",
        "Killed process 78 (mysqld) total-vm:2000kB, anon-rss:1400kB, file-rss:10kB",
    ]
    events = run(lines)
    assert [(e.victim.pid, e.victim.score) for e in events if e.victim] == [(77, 900), (78, 800)]
    assert events[0].victim is not None and events[0].victim.shmem_rss_kb is None
    assert events[0].cgroup.limit_scope == "global" and events[0].constraint is None


@pytest.mark.parametrize(
    "comm", ["Plex Media Serv", "a(b) c", "x) total-vm:1k", "w\u00f6rker.1", "kworker/u8:2", "()", "a\\xffb"]
)
def test_odd_process_names(comm: str) -> None:
    [event] = run(modern_report(pid=555, comm=comm))
    assert event.victim is not None and event.victim.comm == comm and event.victim.pid == 555
    assert event.victim.anon_rss_kb == 65152
    assert event.trigger is not None and event.trigger.comm == comm
    assert event.tasks is not None and event.tasks[0].name == comm


def test_truncated_report_is_flushed_partial_with_raw_lines() -> None:
    lines = modern_report()[:15]
    [event] = run(lines)
    assert event.partial and event.victim is None and event.partial_reason
    assert event.trigger is not None and event.trigger.pid == 2031
    assert event.raw_lines is not None and event.raw_lines[0].startswith("python3 invoked oom-killer")


def test_a_partial_report_longer_than_the_raw_line_bound_says_how_long_it_was() -> None:
    """Only the first max_raw_lines lines are kept; raw_lines_total and the dead letter say the
    rest existed, and the assembler counts them (README "Bounds and what happens at them")."""
    from streamer.sinks.base import DeadLetter, dead_letter_to_json

    lines = modern_report()[:15]
    [whole] = run(lines)
    assert whole.raw_lines_total == len(whole.raw_lines or []) == 15
    asm = Assembler(max_raw_lines=5)
    [event] = run(lines, asm)
    assert event.raw_lines == (whole.raw_lines or [])[:5] and event.raw_lines_total == 15
    assert asm.counts["raw_lines_not_kept"] == 10
    envelope = orjson.loads(dead_letter_to_json(DeadLetter.from_event(event, "partial_report")))
    assert envelope["raw_lines_total"] == 15 and envelope["raw_lines_truncated"] is True
    complete = orjson.loads(dead_letter_to_json(DeadLetter.from_event(whole, "partial_report")))
    assert complete["raw_lines_total"] == 15 and complete["raw_lines_truncated"] is False


def test_report_without_kill_times_out_on_record_time() -> None:
    asm = Assembler(report_timeout_seconds=5.0)
    out: list[OomEvent] = []
    for record in records(modern_report()[:10]):
        out.extend(asm.feed(record))
    assert out == []
    later = KernelRecord(message="unrelated", format="dmesg", kernel_time=200.0)
    out.extend(asm.feed(later))
    assert len(out) == 1 and out[0].partial


def test_tick_releases_held_events_in_live_mode() -> None:
    asm = Assembler(linger_seconds=1.0)
    asm.tick(1000.0)
    out: list[OomEvent] = []
    for record in records(modern_report()):
        out.extend(asm.feed(record))
    assert out == []  # waits for group members and the reaper
    assert asm.tick(1000.5) == []
    released = asm.tick(1002.0) + asm.tick(1003.5)
    assert [e.victim.pid for e in released if e.victim] == [2031]
    assert asm.flush() == []


def test_victim_already_exiting() -> None:
    lines = modern_report()[:-1] + [
        "Memory cgroup out of memory: OOM victim 2031 (python3) is already exiting. Skip killing the task"
    ]
    [event] = run(lines)
    assert event.victim is not None and event.victim.already_exiting and event.victim.pid == 2031
    assert event.victim.anon_rss_kb is None


def test_global_oom_summary_and_mem_info() -> None:
    lines = [
        "stress invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0",
        "CPU: 0 PID: 99 Comm: stress Not tainted 5.10.0 #1",
        "Mem-Info:",
        "active_anon:1000 inactive_anon:2000 isolated_anon:0",
        " active_file:10 inactive_file:20 isolated_file:0",
        "Node 0 active_anon:4000kB inactive_anon:8000kB",
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
        "[     99]     0    99   500000   400000  3000000        0             0 stress",
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,"
        "task_memcg=/user.slice/user-0.slice/session-1.scope,task=stress,pid=99,uid=0",
        "Out of memory: Killed process 99 (stress) total-vm:2000000kB, anon-rss:1600000kB, file-rss:0kB, "
        "shmem-rss:0kB, UID:0 pgtables:2929kB oom_score_adj:0",
    ]
    [event] = run(lines)
    assert event.constraint == "CONSTRAINT_NONE" and event.cgroup.limit_scope == "global"
    assert event.cgroup.oom_memcg is None
    assert event.cgroup.task_memcg == "/user.slice/user-0.slice/session-1.scope"
    assert event.mem_info is not None and event.mem_info["active_anon"] == 1000
    assert event.mem_info["inactive_file"] == 20 and event.memcg is None


def test_summary_with_comma_in_comm() -> None:
    lines = modern_report()
    lines[-2] = lines[-2].replace("task=python3", "task=a,b=c")
    lines[-1] = lines[-1].replace("(python3)", "(a,b=c)")
    [event] = run(lines)
    assert event.victim is not None and event.victim.comm == "a,b=c"
    assert event.cgroup.task_memcg == CONTAINER_PATH


def test_untrusted_records_never_become_events() -> None:
    asm = Assembler()
    line = modern_report()[-1]
    assert asm.feed(KernelRecord(message=line, format="kmsg", trusted=False)) == []
    assert asm.flush() == [] and asm.counts["untrusted_records"] == 1


def test_multi_line_record_is_split() -> None:
    text = "\n".join(modern_report())
    [event] = run([text])
    assert event.victim is not None and event.tasks_total == 2


def test_event_id_stable_across_formats_and_distinct_per_kill() -> None:
    first = run(modern_report())[0]
    second = run(modern_report())[0]
    assert first.event_id == second.event_id
    other = run(modern_report(pid=2032))[0]
    assert other.event_id != first.event_id


def test_kernel_time_going_back_does_not_expire_the_next_report() -> None:
    """Two logs in one run (an old boot with a large uptime, then a fresh one)."""
    asm = Assembler()
    out: list[OomEvent] = []
    for record in records(modern_report(pid=1), start=900_000.0):
        out.extend(asm.feed(record))
    for record in records(modern_report(pid=2), start=50.0):
        out.extend(asm.feed(record))
    out.extend(asm.flush())
    assert [(e.victim.pid if e.victim else None, e.partial) for e in out] == [(1, False), (2, False)]


def test_flush_for_restart_keeps_an_unfinished_report() -> None:
    asm = Assembler()
    for record in records(modern_report(pid=1) + modern_report(pid=2)[:8]):
        asm.feed(record)
    events = asm.flush(unfinished=False)
    assert [e.victim.pid for e in events if e.victim] == [1] and not any(e.partial for e in events)
    pending = asm.oldest_pending_position()
    assert pending is not None and pending.offset == len(modern_report(pid=1))  # the 2nd report's header


def test_a_report_without_kernel_times_opened_before_the_first_tick_is_released_by_ticks() -> None:
    # Field bug: rsyslog's imkmsg relays reports without the printk stamp; a report that opened
    # before its assembler's first tick waited for the next report or a stop.
    from parsers.records import KernelRecord as Record

    assembler = Assembler(linger_seconds=0.2, report_timeout_seconds=1.0)
    lines = [
        "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "memory: usage 1024kB, limit 1024kB, failcnt 1",
        "Memory cgroup out of memory: Killed process 7 (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
        "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]
    for line in lines:
        assert assembler.feed(Record(message=line, format="syslog-5424", host="h")) == []
    released = [event for now in (10.0, 10.5, 11.0) for event in assembler.tick(now)]
    assert [event.victim.pid for event in released if event.victim] == [7]
