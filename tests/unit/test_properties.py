"""Property tests: framing and assembly never raise and never lose a kill line."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.events import OomEvent
from parsers.framing import FORMATS, Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner

KILL_TEMPLATE = (
    "[{t:12.6f}] Memory cgroup out of memory: Killed process {pid} ({comm}) total-vm:1000kB, "
    "anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:40kB oom_score_adj:0"
)
REPORT_BODY = [
    "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "CPU: 1 UID: 0 PID: 1 Comm: python3 Not tainted 6.18.44 #1",
    "memory: usage 65536kB, limit 65536kB, failcnt 332",
    "Memory cgroup stats for /x:",
    "anon 1",
    "Tasks state (memory values in pages):",
    "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
    "[      1]     0     1    18790    17939   188416        0             0 python3",
]
# The summary names the victim the report's kill line kills (the kernel prints it for that victim).
SUMMARY_TEMPLATE = (
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/x,"
    "task_memcg=/x,task={comm},pid={pid},uid=0"
)
NOISE = [
    "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
    "audit: type=1400 audit(1.2:3): apparmor=DENIED",
    "oom_reaper: reaped process 77777 (gone), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    "Task",
    "oom",
    "[ 1.0] OOM",
    "Killed",
    "\x00\x01 garbage",
    "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
]
comms = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r"),
    min_size=1,
    max_size=15,
)


def scan(data: bytes, chunk_sizes: list[int], fmt: str = "auto") -> list[OomEvent]:
    scanner = LogScanner(Framer(fmt), Assembler(), max_line_bytes=1 << 20)
    events: list[OomEvent] = []
    pos = 0
    for size in chunk_sizes:
        events.extend(scanner.feed(data[pos : pos + size]))
        pos += size
    events.extend(scanner.feed(data[pos:]))
    events.extend(scanner.finish())
    events.extend(scanner.assembler.flush())
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000), st.lists(st.integers(1, 700), max_size=8), st.sampled_from(FORMATS))
def test_arbitrary_bytes_never_raise(data: bytes, chunks: list[int], fmt: str) -> None:
    for event in scan(data, chunks, fmt):
        assert event.event_id


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4_000_000), comms), min_size=1, max_size=12, unique_by=lambda x: x[0]),
    st.lists(st.sampled_from(NOISE), max_size=40),
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 300), max_size=10),
    st.booleans(),
)
def test_no_kill_line_is_lost_among_noise_and_report_lines(
    kills: list[tuple[int, str]],
    noise: list[str],
    rnd: object,
    chunks: list[int],
    with_report: bool,
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    kill_lines = [
        KILL_TEMPLATE.format(t=10 + i * 0.01, pid=pid, comm=comm) for i, (pid, comm) in enumerate(kills)
    ]
    body = [*REPORT_BODY, SUMMARY_TEMPLATE.format(pid=kills[0][0], comm=kills[0][1])]
    filler = [f"[{5.0:12.6f}] {line}" for line in (body if with_report else [])]
    lines = filler + kill_lines
    # Shuffle noise in between while keeping the kill lines' order.
    for line in noise:
        lines.insert(rnd.randrange(len(lines) + 1), f"[{9.0:12.6f}] {line}")
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    events = scan(data, chunks)
    victims = [(e.victim.pid, e.victim.comm) for e in events if e.victim is not None]
    assert sorted(victims) == sorted(kills)


@settings(max_examples=20, deadline=None)
@given(
    st.integers((1 << 20) + 1, (1 << 20) + 70000),
    st.sampled_from([b"x", b"\xff", b"oom ", b"will ", b"Out of memory: Killed process "]),
)
def test_huge_lines_are_truncated_and_counted_not_fatal(size: int, filler: bytes) -> None:
    kill = KILL_TEMPLATE.format(t=1.0, pid=42, comm="after").encode()
    data = (filler * (size // len(filler) + 1))[:size] + b"\n" + kill + b"\n"
    scanner = LogScanner(Framer(), Assembler(), max_line_bytes=1 << 20)
    events: list[OomEvent] = []
    for start in range(0, len(data), 65536):
        events.extend(scanner.feed(data[start : start + 65536]))
    events.extend(scanner.finish())
    events.extend(scanner.assembler.flush())
    assert [e.victim.pid for e in events if e.victim] == [42]
    assert scanner.counts["lines"] == 2
    if filler.strip() in (b"will", b"Out of memory: Killed process"):
        # Framed (it has a keyword): truncated to the limit and counted.
        assert scanner.counts["long_lines_truncated"] == 1
    else:
        # No keyword: it cannot be part of a report, the prefilter skips it whole (and counts it).
        assert scanner.counts["lines_prefiltered"] + scanner.counts["long_lines_truncated"] == 1
