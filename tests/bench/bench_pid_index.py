"""CPU cost of the pid -> cgroup index: one full /proc scan, with N extra idle processes.

Prints the scan time per process and the share of one core it costs at the default refresh
interval (2 s), with this machine's processes plus N sleepers.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from streamer.enrich.pid_index import PidIndex


def measure(index: PidIndex, rounds: int) -> tuple[float, float]:
    """(cold scan: every process read; steady scan: only new pids read), best of rounds, CPU s."""
    cold = steady = float("inf")
    for _ in range(rounds):
        fresh = PidIndex()
        start = time.process_time()
        fresh.scan()
        cold = min(cold, time.process_time() - start)
        index.scan()
        start = time.process_time()
        index.scan()
        steady = min(steady, time.process_time() - start)
    return cold, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extra", type=int, default=500, help="idle processes to add")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    index = PidIndex()
    base = measure(index, args.rounds)
    base_n = len(index._alive)
    sleepers = [subprocess.Popen(["sleep", "120"]) for _ in range(args.extra)]
    try:
        time.sleep(0.5)
        loaded = measure(index, args.rounds)
        loaded_n = len(index._alive)
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
    refresh = index.refresh_seconds
    for label, (cold, steady), count in (
        ("this machine", base, base_n),
        (f"+{args.extra} sleepers", loaded, loaded_n),
    ):
        print(
            f"pid index, {label}, {count} processes: full scan {cold * 1000:.1f} ms CPU "
            f"({cold / max(count, 1) * 1e6:.0f} us/process); steady scan {steady * 1000:.2f} ms; "
            f"at a {refresh:.0f} s refresh with a full re-read every {index.reread_seconds:.0f} s: "
            f"{(steady / refresh + cold / index.reread_seconds) * 100:.2f}% of one core"
        )


if __name__ == "__main__":
    main()
