"""Parse speed benchmark: `oomstream parse` against the raw line-read rate, in one run.

Prints lines/s for (a) reading the lines of the same file in Python with nothing else done,
(b) `oomstream parse` on it; and for journald JSON, (c) `orjson.loads` of every line alone vs (d)
`oomstream parse`. Targets (issue 2): plain text with 1% OOM-report lines >= 1.5 M lines/s and
>= 25% of the raw read rate; journald JSON >= 60% of the orjson.loads rate.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr

import orjson

from parsers.scan import KEYWORDS
from streamer.cli import main as oomstream_main

NOISE = [
    "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
    'audit: type=1400 audit(1700000000.123:456): apparmor="DENIED" operation="open" profile="snap"',
    "EXT4-fs (sda1): mounted filesystem with ordered data mode. Opts: (null)",
    "nf_conntrack: nf_conntrack: table full, dropping packet",
    "cni0: port 3(veth1a2b3c4d) entered forwarding state",
    "device veth1a2b3c4d entered promiscuous mode",
    "TCP: request_sock_TCP: Possible SYN flooding on port 10250. Sending cookies.",
    "xfs filesystem being remounted at /var/lib/kubelet/pods/x/volume-subpaths supports timestamps",
]


def report_lines(pid: int) -> list[str]:
    cid = f"{pid:064x}"
    path = f"/kubepods/burstable/pod8dc3c9f0-6a5a-4d1c-9f9f-0b2f1e6c3a11/{cid}"
    lines = [
        "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=968",
        f"CPU: 1 UID: 0 PID: {pid} Comm: python3 Not tainted 6.18.44 #1 PREEMPT(none)",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x57/0x80",
        " dump_header+0x43/0x1c0",
        " oom_kill_process.cold+0x8/0x8a",
        " </TASK>",
        "memory: usage 65536kB, limit 65536kB, failcnt 332",
        "memory+swap: usage 65536kB, limit 9007199254740988kB, failcnt 0",
        "kmem: usage 224kB, limit 9007199254740988kB, failcnt 0",
        f"Memory cgroup stats for {path}:",
    ]
    lines += [f"stat_{i} {i * 4096}" for i in range(20)]
    lines += [
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents"
        " oom_score_adj name",
        f"[{pid:7d}]     0 {pid:5d}    18790    17939    16288     1651         0   188416        0"
        "           968 python3",
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg={path},"
        f"task_memcg={path},task=python3,pid={pid},uid=0",
        f"Memory cgroup out of memory: Killed process {pid} (python3) total-vm:75160kB, anon-rss:65152kB,"
        " file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:184kB oom_score_adj:968",
    ]
    return lines


def messages(total: int, oom_fraction: float, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    sample = report_lines(1000)
    per_report = len(sample)
    reports = max(1, int(total * oom_fraction / per_report))
    gap = total // reports
    out: list[str] = []
    pid = 1000
    while len(out) < total:
        out.extend(rnd.choice(NOISE) for _ in range(gap - per_report))
        out.extend(report_lines(pid))
        pid += 1
    return out[:total]


def write_dmesg(path: str, total: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for index, message in enumerate(messages(total, 0.01)):
            handle.write(f"[{100 + index / 1000:12.6f}] {message}\n")


def write_journal(path: str, total: int) -> None:
    with open(path, "wb") as handle:
        for index, message in enumerate(messages(total, 0.01)):
            entry = {
                "__CURSOR": f"s=6a8f1e2b3c4d4e5f8a9b0c1d2e3f4a5b;i={index:x};b=5d3c0b1e9a2f4c7e8b6d1a0f2e3c4b5a;"
                f"m={index:x};t=5f3c0b1e9a2f4;x=1a2b3c4d5e6f7a8b",
                "__REALTIME_TIMESTAMP": str(1795791560123456 + index),
                "__MONOTONIC_TIMESTAMP": str(100000000 + index * 1000),
                "_BOOT_ID": "5d3c0b1e9a2f4c7e8b6d1a0f2e3c4b5a",
                "_MACHINE_ID": "0123456789abcdef0123456789abcdef",
                "_HOSTNAME": "node-1",
                "_SOURCE_MONOTONIC_TIMESTAMP": str(100000000 + index * 1000),
                "_TRANSPORT": "kernel",
                "PRIORITY": "6",
                "SYSLOG_FACILITY": "0",
                "SYSLOG_IDENTIFIER": "kernel",
                "MESSAGE": message,
            }
            handle.write(orjson.dumps(entry) + b"\n")


def best_of_interleaved(
    runs: int, baseline: Callable[[], int], subject: Callable[[], int]
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Best CPU time of each, alternating runs so both see the same machine (a shared VM's
    speed drifts by tens of percent within a minute); CPU time leaves out time the process
    was not running at all."""
    best = [float("inf"), float("inf")]
    counts = [0, 0]
    for _ in range(runs):
        for index, fn in enumerate((baseline, subject)):
            start = time.process_time()
            counts[index] = fn()
            best[index] = min(best[index], time.process_time() - start)
    return (best[0], counts[0]), (best[1], counts[1])


def rates(
    runs: int, lines: int, baseline: Callable[[], int], subject: Callable[[], int]
) -> tuple[float, float]:
    """Lines/s of each (best of interleaved runs); both must have counted ``lines``."""
    (base_s, base_n), (subject_s, subject_n) = best_of_interleaved(runs, baseline, subject)
    assert base_n == subject_n == lines, (base_n, subject_n)
    return base_n / base_s, subject_n / subject_s


def raw_read(path: str) -> int:
    count = 0
    with open(path, "rb", buffering=1 << 20) as handle:
        for _line in handle:
            count += 1
    return count


def orjson_only(path: str) -> int:
    count = 0
    loads = orjson.loads
    with open(path, "rb", buffering=1 << 20) as handle:
        for line in handle:
            loads(line)
            count += 1
    return count


def oomstream_parse(path: str) -> int:
    sink = io.StringIO()
    with open(os.devnull, "w") as devnull, redirect_stderr(sink):
        saved = sys.stdout
        sys.stdout = devnull
        try:
            code = oomstream_main(["parse", path])
        finally:
            sys.stdout = saved
    if code != 0:
        raise SystemExit(f"oomstream parse failed: {sink.getvalue()}")
    summary = sink.getvalue()
    return int(summary.split(" lines")[0].rsplit(" ", 1)[1])


def breakdown(path: str, tmp: str, runs: int) -> None:
    """Where the plain-text time goes: the keyword prefilter's passes, line counting, and the
    cost of a line inside a report (a file made only of reports)."""
    with open(path, "rb") as handle:
        data = handle.read()
    find_s = min(_cpu(lambda: [data.find(k + b"\x00") for k in KEYWORDS]) for _ in range(runs))
    count_s = min(_cpu(lambda: data.count(b"\n")) for _ in range(runs))
    reports = os.path.join(tmp, "reports.log")
    lines = [line for i in range(2000) for line in report_lines(1000 + i)]
    with open(reports, "w", encoding="utf-8") as handle:
        for index, message in enumerate(lines):
            handle.write(f"[{100 + index / 1000:12.6f}] {message}\n")
    report_s = min(_cpu(lambda: oomstream_parse(reports)) for _ in range(runs))
    mb = len(data) / 1e6
    print(
        f"  breakdown: keyword passes {find_s:.3f} s and line counting {count_s:.3f} s "
        f"per {mb:.0f} MB; {report_s / len(lines) * 1e6:.1f} us per line inside a report"
    )


def _cpu(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--json-lines", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oomstream-bench-") as tmp:
        dmesg = os.path.join(tmp, "kern.log")
        journal = os.path.join(tmp, "journal.json")
        write_dmesg(dmesg, args.lines)
        write_journal(journal, args.json_lines)
        size_mb = os.path.getsize(dmesg) / 1e6

        raw_rate, parse_rate = rates(
            args.runs, args.lines, lambda: raw_read(dmesg), lambda: oomstream_parse(dmesg)
        )
        print(f"plain text (dmesg, 1% OOM-report lines): {args.lines} lines, {size_mb:.0f} MB")
        print(f"  raw line read        {raw_rate / 1e6:8.2f} M lines/s")
        print(f"  oomstream parse      {parse_rate / 1e6:8.2f} M lines/s   (target >= 1.50)")
        print(f"  ratio parse/raw      {parse_rate / raw_rate:8.2f}           (target >= 0.25)")
        breakdown(dmesg, tmp, args.runs)

        loads_rate, jparse_rate = rates(
            args.runs, args.json_lines, lambda: orjson_only(journal), lambda: oomstream_parse(journal)
        )
        print(f"journald JSON export (1% OOM-report lines): {args.json_lines} lines")
        print(f"  orjson.loads alone   {loads_rate / 1e6:8.2f} M lines/s")
        print(f"  oomstream parse      {jparse_rate / 1e6:8.2f} M lines/s")
        print(f"  ratio parse/loads    {jparse_rate / loads_rate:8.2f}           (target >= 0.60)")


if __name__ == "__main__":
    main()
