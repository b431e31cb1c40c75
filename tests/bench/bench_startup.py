"""Start-up cost per command (``make bench``): CPU seconds of a whole invocation, beside a bare
``python -c pass`` measured in the same run, interleaved.

Target: ``oomstream --help``, ``parse`` (of an empty file) and ``check-config`` under 0.25 s of CPU.
CPU (user + system of the child process) rather than wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_SECONDS = 0.25


def cpu_of(argv: list[str], repo: Path) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of running ``argv`` to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs of each command, interleaved")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose streamer/ to time")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.NamedTemporaryFile(suffix=".log") as empty:
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "oomstream --help": [python, "-m", "streamer.cli", "--help"],
            "oomstream parse EMPTY": [python, "-m", "streamer.cli", "parse", empty.name],
            "oomstream check-config": [python, "-m", "streamer.cli", "check-config"],
            "oomstream run --help": [python, "-m", "streamer.cli", "run", "--help"],
        }
        env_free = {k: v for k, v in os.environ.items() if not k.startswith("OOMSTREAM_")}
        os.environ.clear()
        os.environ.update(env_free)  # check-config must not trip over a test's variables
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(cpu_of(argv, args.repo)[0])
    base = statistics.median(samples["python -c pass"])
    print(f"start-up CPU per invocation (median of {args.runs}, interleaved):")
    for name, values in samples.items():
        median = statistics.median(values)
        line = f"  {name:24} {median:6.3f} s CPU"
        if name != "python -c pass":
            line += f"  ({median - base:+.3f} s over bare python)"
            if name != "oomstream run --help":
                ok = median < TARGET_SECONDS
                line += f"  target < {TARGET_SECONDS} s: {'MET' if ok else 'NOT MET'}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
