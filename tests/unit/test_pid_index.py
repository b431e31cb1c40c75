"""pid -> cgroup index: attribution of bare kill lines."""

from __future__ import annotations

import os
import time
from pathlib import Path

from parsers.events import CgroupInfo, OomEvent, Source, Victim
from streamer.enrich.pid_index import PidIndex, read_memory_cgroup

CID = "ab" * 32
POD = "8dc3c9f0-6a5a-4d1c-9f9f-0b2f1e6c3a11"
PATH = f"/kubepods/burstable/pod{POD}/{CID}"


def bare(pid: int, comm: str) -> OomEvent:
    return OomEvent(
        event_id="0" * 8 + "-0000-0000-0000-" + "0" * 12, time=None, time_source=None, kernel_time=1.0,
        host=None, boot_id=None, victim=Victim(pid=pid, comm=comm), trigger=None, constraint=None,
        cgroup=CgroupInfo(), memcg=None, tasks=None, tasks_total=None, group_kill=False, partial=False,
        partial_reason=None, kill_message=None, reaped=None, memcg_stats=None, mem_info=None,
        source=Source(kind="file", format="dmesg", position=None),
    )  # fmt: skip


def fake_proc(root: Path, pid: int, comm: str, memory_path: str) -> None:
    directory = root / str(pid)
    directory.mkdir(parents=True)
    (directory / "comm").write_text(comm + "\n")
    (directory / "cgroup").write_text(f"9:name=systemd:/\n4:memory:{memory_path}\n0::/\n")


def test_bare_kill_attributed_from_index(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    fake_proc(proc, 4242, "java", PATH)
    fake_proc(proc, 4243, "sh", "/system.slice/x.service")
    index = PidIndex(proc=str(proc), cgroup_root=str(tmp_path / "cg"))
    index.scan(now=0.0)
    event = index.attribute(bare(4242, "java"))
    assert event.cgroup.source == "pid_index" and event.cgroup.task_memcg == PATH
    assert event.cgroup.pod_uid == POD and event.cgroup.container_id == CID
    # pid reused by another program: the comm check refuses the stale entry
    assert index.attribute(bare(4243, "python3")).cgroup.source == "none"


def test_dead_pid_survives_one_rescan(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    fake_proc(proc, 10, "worker", PATH)
    index = PidIndex(proc=str(proc), cgroup_root=str(tmp_path / "cg"))
    index.scan(now=0.0)
    for child in (proc / "10").iterdir():
        child.unlink()
    (proc / "10").rmdir()
    index.scan(now=5.0)
    assert index.lookup(10) is not None
    index.scan(now=10.0)
    assert index.lookup(10) is None


def test_memory_events_counter_attribution(tmp_path: Path) -> None:
    cg = tmp_path / "cg" / "memory"
    leaf = cg / "kubepods" / "burstable" / f"pod{POD}" / CID
    for directory in (
        cg / "kubepods",
        cg / "kubepods" / "burstable",
        cg / "kubepods" / "burstable" / f"pod{POD}",
        leaf,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    index = PidIndex(proc=str(tmp_path / "noproc"), cgroup_root=str(tmp_path / "cg"))
    (tmp_path / "noproc").mkdir()
    index.scan(now=0.0)
    # the kernel counts the kill in the victim's memcg and every ancestor
    for directory in (
        cg / "kubepods",
        cg / "kubepods" / "burstable",
        cg / "kubepods" / "burstable" / f"pod{POD}",
        leaf,
    ):
        (directory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    index.scan(now=1.0)
    event = index.attribute(bare(999, "gone"))
    assert event.cgroup.source == "memory_events" and event.cgroup.task_memcg == PATH


def test_real_proc_scan_finds_this_process() -> None:
    index = PidIndex()
    started = time.perf_counter()
    index.scan()
    elapsed = time.perf_counter() - started
    entry = index.lookup(os.getpid())
    assert entry is not None and entry.cgroup == read_memory_cgroup("/proc", os.getpid())
    print(f"pid index: {len(index)} processes scanned in {elapsed * 1000:.1f} ms")
