"""parsers.streams.HostAssemblers: one assembler per host, oldest pending report across hosts."""

from __future__ import annotations

from parsers.oom import Assembler
from parsers.records import KernelRecord, SourcePosition
from parsers.streams import HostAssemblers

HEADER = "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
KILL = (
    "Memory cgroup out of memory: Killed process {pid} (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
    "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0"
)


def record(host: str, offset: int, message: str, t: float) -> KernelRecord:
    return KernelRecord(message, "dmesg", kernel_time=t, host=host, position=SourcePosition("syslog", offset))


def test_interleaved_reports_of_two_hosts_stay_apart() -> None:
    streams = HostAssemblers(lambda: Assembler(linger_seconds=0.1))
    events = streams.feed(record("a", 0, HEADER, 1.0))
    events += streams.feed(record("b", 1, HEADER, 50.0))
    assert streams.needs_every_line("a") and streams.needs_every_line("b")
    assert not streams.needs_every_line("c")
    assert streams.oldest_pending_position() == SourcePosition("syslog", 0)
    events += streams.feed(record("b", 2, KILL.format(pid=2), 50.0))
    events += streams.feed(record("a", 3, KILL.format(pid=1), 1.0))
    events += streams.flush()
    assert sorted((e.host, e.victim.pid) for e in events if e.victim) == [("a", 1), ("b", 2)]
    assert streams.streams == 2 and not streams.busy
