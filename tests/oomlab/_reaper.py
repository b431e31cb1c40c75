"""A victim that cannot exit promptly, so the kernel's oom_reaper has to reap its memory.

Since Linux 5.18 the oom_reaper waits ~2 s before touching a victim, and a victim that simply
exits frees its own memory first, so ``oom_reaper: reaped process ...`` is only printed when the
victim is stuck. :func:`stuck_victim` builds such a victim honestly: a process holding a lot of
anonymous memory with a second thread blocked in uninterruptible sleep on an ``O_DIRECT`` read
that a cgroup v1 blkio throttle (4 KiB/s) holds back. When the OOM killer picks it, the main
thread dies but the mm stays pinned by the D-state thread; after 2 s the reaper frees the
anonymous memory and logs the line. On exit the throttle is lifted and the process goes away.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._cgroup import MEMCG_V1_ROOT, cgroup_kernel_path
from ._procs import DEFAULT_PYTHON, _preexec, comm_bytes

__all__ = ["BLKIO_V1_ROOT", "StuckVictim", "block_device_of", "stuck_victim"]

BLKIO_V1_ROOT = Path("/sys/fs/cgroup/blkio")

_VICTIM = r"""
import ctypes, mmap, os, signal, sys, threading
want_cg, comm_hex, hold, blob, blk_tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
with open("/proc/self/cgroup") as fh:
    cg = [l.rstrip("\n").split(":", 2)[2] for l in fh if "memory" in l.split(":", 2)[1].split(",")]
if cg != [want_cg]:
    sys.exit(97)
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(comm_hex)), 0, 0, 0)
mem = []
left = hold
while left > 0:
    mem.append(b"\x01" * min(left, 1 << 20))
    left -= 1 << 20
def reader():
    # Only this thread joins the throttled blkio cgroup (v1 "tasks" takes a TID), so the rest
    # of the process - including page faults on the interpreter's own files - is unaffected.
    fd = os.open(blob, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 1 << 20)
    with open(blk_tasks, "w") as fh:
        fh.write(str(threading.get_native_id()))
    os.write(1, b"R%d\n" % threading.get_native_id())
    os.preadv(fd, [buf], 0)
threading.Thread(target=reader, daemon=True).start()
while True:
    signal.pause()
"""


@dataclass
class StuckVictim:
    """The process made by :func:`stuck_victim`."""

    pid: int
    comm: bytes
    oom_score_adj: int | None
    hold_bytes: int
    cgroup: str  # kernel-visible memcg path
    returncode: int | None = None  # set after the context exits (-9 when OOM-killed)


def block_device_of(path: Path) -> str:
    """``MAJ:MIN`` of the whole disk holding ``path`` (blk-throttle rules need the disk, not a partition)."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sysdir = Path(f"/sys/dev/block/{major}:{minor}")
    if not sysdir.exists():
        raise RuntimeError(f"{path} is not on a block device ({major}:{minor})")
    if (sysdir / "partition").exists():
        return (sysdir.resolve().parent / "dev").read_text().strip()
    return f"{major}:{minor}"


def _thread_state(pid: int, tid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except FileNotFoundError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def stuck_victim(
    cgroup_dir: Path | str,
    *,
    hold_bytes: int,
    comm: str | bytes = "bigvictim",
    oom_score_adj: int | None = 500,
    blob_dir: Path | str = "/var/tmp",
    python: str = DEFAULT_PYTHON,
    root: Path = MEMCG_V1_ROOT,
    blkio_root: Path = BLKIO_V1_ROOT,
) -> Iterator[StuckVictim]:
    """Start a victim in ``cgroup_dir`` that will need the oom_reaper (see module docstring).

    The victim holds ``hold_bytes`` of anonymous memory and has one thread in D state. Give it
    most of the memcg's limit and a high ``oom_score_adj`` so the kernel picks it when another
    process (e.g. :func:`run_oom`) exhausts the limit. Requires the cgroup v1 blkio controller
    with ``CONFIG_BLK_DEV_THROTTLING`` and ``blob_dir`` on a block device that honours O_DIRECT.
    """
    cg = Path(cgroup_dir)
    kpath = cgroup_kernel_path(cg, root)
    blob_dir = Path(blob_dir)
    blkcg = blkio_root / f"oomlab-stuck-{os.getpid()}-{time.monotonic_ns()}"
    blob = blob_dir / f".oomlab-stuck-{os.getpid()}-{time.monotonic_ns()}"
    name = comm_bytes(comm)
    proc: subprocess.Popen[bytes] | None = None
    dev = ""
    victim: StuckVictim | None = None
    try:
        with open(blob, "wb") as fh:
            fh.write(os.urandom(1 << 20))
            fh.flush()
            os.fsync(fh.fileno())
        dev = block_device_of(blob)
        blkcg.mkdir()
        (blkcg / "blkio.throttle.read_bps_device").write_text(f"{dev} 4096")
        memcg_procs = str(cg / "cgroup.procs")
        proc = subprocess.Popen(
            [
                python,
                "-I",
                "-S",
                "-c",
                _VICTIM,
                kpath,
                name.hex(),
                str(hold_bytes),
                str(blob),
                str(blkcg / "tasks"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            preexec_fn=lambda: _preexec(memcg_procs, oom_score_adj, None, None),
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        if not ready.startswith(b"R"):
            raise RuntimeError(f"stuck victim failed to start (rc={proc.wait()})")
        tid = int(ready[1:])
        deadline = time.monotonic() + 10
        while _thread_state(proc.pid, tid) != "D":
            if time.monotonic() > deadline:
                raise RuntimeError("victim reader thread never entered D state (throttle not effective?)")
            time.sleep(0.02)
        victim = StuckVictim(proc.pid, name, oom_score_adj, hold_bytes, kpath)
        yield victim
    finally:
        if dev and blkcg.exists():
            with contextlib.suppress(OSError):
                (blkcg / "blkio.throttle.read_bps_device").write_text(f"{dev} 0")
        if proc is not None:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                # Not OOM-killed (the test did not trigger an OOM): SIGTERM keeps -9 meaningful.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            if victim is not None:
                victim.returncode = proc.returncode
        deadline = time.monotonic() + 10
        while blkcg.exists():
            try:
                blkcg.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            blob.unlink()
