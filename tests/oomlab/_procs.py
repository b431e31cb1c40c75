"""Start processes inside a memory cgroup, let them allocate until the OOM killer strikes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._cgroup import MEMCG_V1_ROOT, cgroup_kernel_path, read_memcg_int

__all__ = [
    "DEFAULT_PYTHON",
    "OomRun",
    "ProcResult",
    "StormChild",
    "StormResult",
    "comm_bytes",
    "idle_holder",
    "oom_storm",
    "run_oom",
    "run_oom_detailed",
]

#: Interpreter used for the children: the system one, so a non-root ``uid`` can execute it.
DEFAULT_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

TASK_COMM_LEN = 16  # including the NUL: comm holds at most 15 bytes

# The child program. argv: mode, comm (hex), expected memcg path, chunk bytes, idle bytes.
# It refuses to allocate unless it really sits in the expected memory cgroup (safety net
# against ever growing without a limit), renames itself with PR_SET_NAME and then either
# allocates 1-page-touched chunks forever or holds ``idle bytes`` and sleeps.
_CHILD = r"""
import ctypes, os, signal, sys
mode, comm_hex, want_cg = sys.argv[1], sys.argv[2], sys.argv[3]
chunk, idle = int(sys.argv[4]), int(sys.argv[5])
cg = None
with open("/proc/self/cgroup") as fh:
    for line in fh:
        _, ctrl, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrl.split(","):
            cg = path
if cg != want_cg:
    sys.stderr.write("oomlab child: in memcg %r, expected %r; refusing to allocate\n" % (cg, want_cg))
    sys.exit(97)
name = bytes.fromhex(comm_hex)
if name:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0) != 0:
        sys.exit(98)
hold = []
if mode == "idle":
    step = 1 << 20
    left = idle
    while left > 0:
        hold.append(b"\x01" * min(step, left))
        left -= step
    os.write(1, b"R")
    while True:
        signal.pause()
else:
    os.write(1, b"R")
    while True:
        hold.append(b"\x01" * chunk)
"""

# Fork-based storm driver, runs *outside* the test cgroups and never allocates itself.
# argv: json config. Prints one JSON document with the per-child accounting.
_STORM = r"""
import ctypes, json, os, sys, time
cfg = json.loads(sys.argv[1])
dirs, kills, par, chunk, names = cfg["dirs"], cfg["kills"], cfg["parallel"], cfg["chunk"], cfg["comms"]
deadline = time.monotonic() + cfg["timeout"]
libc = ctypes.CDLL(None, use_errno=True)
running = {}
done = []
started = 0
def spawn(i):
    d = dirs[i % len(dirs)]
    name = bytes.fromhex(names[i % len(names)])
    pid = os.fork()
    if pid == 0:
        try:
            with open(os.path.join(d, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
            with open("/proc/self/cgroup") as fh:
                want = cfg["kpaths"][i % len(dirs)]
                ok = any(l.split(":", 2)[1] == "memory" and l.split(":", 2)[2].strip() == want for l in fh)
            if not ok:
                os._exit(97)
            if cfg["adj"] is not None:
                with open("/proc/self/oom_score_adj", "w") as fh:
                    fh.write(str(cfg["adj"]))
            libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)
            hold = []
            while True:
                hold.append(b"\x01" * chunk)
        except BaseException:
            os._exit(96)
    running[pid] = (i, d, time.monotonic())
while (started < kills or running) and time.monotonic() < deadline:
    while started < kills and len(running) < par:
        spawn(started)
        started += 1
    pid, status = os.waitpid(-1, 0)
    i, d, t0 = running.pop(pid)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    done.append({"index": i, "pid": pid, "cgroup": d, "signal": sig, "exit": code,
                 "start_monotonic": t0, "end_monotonic": time.monotonic()})
for pid in list(running):
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    i, d, t0 = running.pop(pid)
    done.append({"index": i, "pid": pid, "cgroup": d, "signal": None, "exit": None, "timeout": True,
                 "start_monotonic": t0, "end_monotonic": time.monotonic()})
print(json.dumps({"children": done}))
"""


def comm_bytes(comm: str | bytes) -> bytes:
    """The bytes the kernel will store as ``comm`` for ``comm`` (UTF-8, cut at 15 bytes)."""
    raw = comm.encode("utf-8") if isinstance(comm, str) else comm
    if b"\0" in raw:
        raise ValueError("comm must not contain NUL")
    return raw[: TASK_COMM_LEN - 1]


@dataclass
class ProcResult:
    """One child started by :func:`run_oom_detailed`."""

    pid: int
    role: Literal["allocator", "idle"]
    comm: bytes  # what the kernel holds (already truncated to 15 bytes)
    oom_score_adj: int | None
    uid: int
    returncode: int | None = None
    stderr: bytes = b""

    @property
    def oom_killed(self) -> bool:
        """True if the process died of SIGKILL (the OOM killer's signal; we never send it)."""
        return self.returncode == -signal.SIGKILL


@dataclass
class OomRun:
    """Outcome of :func:`run_oom_detailed`."""

    cgroup: str  # kernel-visible path of the cgroup the children ran in
    procs: list[ProcResult] = field(default_factory=list)
    started_monotonic: float = 0.0
    finished_monotonic: float = 0.0
    failcnt: int | None = None  # memory.failcnt of the cgroup after the run

    @property
    def killed_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.oom_killed]

    @property
    def allocators(self) -> list[ProcResult]:
        return [p for p in self.procs if p.role == "allocator"]


def _preexec(procs_file: str, oom_score_adj: int | None, uid: int | None, gid: int | None) -> None:
    # Runs in the child between fork and exec: join the cgroup first, so that everything the
    # exec'd program allocates is charged to (and limited by) it.
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    if oom_score_adj is not None:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, str(oom_score_adj).encode())
        finally:
            os.close(fd)
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def _spawn(
    cgroup_dir: Path,
    kpath: str,
    mode: str,
    comm: bytes,
    oom_score_adj: int | None,
    uid: int | None,
    chunk_bytes: int,
    idle_bytes: int,
    python: str,
) -> subprocess.Popen[bytes]:
    gid = uid if uid is not None else None
    procs_file = str(cgroup_dir / "cgroup.procs")
    args = [python, "-I", "-S", "-c", _CHILD, mode, comm.hex(), kpath, str(chunk_bytes), str(idle_bytes)]
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
        cwd="/",
        preexec_fn=lambda: _preexec(procs_file, oom_score_adj, uid, gid),
    )


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready or os.read(proc.stdout.fileno(), 1) != b"R":
        raise RuntimeError(f"child {proc.pid} did not become ready (rc={proc.poll()})")


def run_oom_detailed(
    cgroup_dir: Path | str,
    *,
    comm: str | bytes = "oomtest",
    oom_score_adj: int | None = None,
    nprocs: int = 1,
    idle: int = 0,
    idle_bytes: int = 8 << 20,
    idle_comm: str | bytes | Sequence[str | bytes] | None = None,
    idle_oom_score_adj: int | Sequence[int | None] | None = None,
    uid: int | None = None,
    chunk_bytes: int = 1 << 20,
    timeout: float = 60.0,
    python: str = DEFAULT_PYTHON,
    root: Path = MEMCG_V1_ROOT,
) -> OomRun:
    """Run allocating process(es) inside ``cgroup_dir`` until the OOM killer kills them; return every
    child's pid, role, comm and return code (:func:`run_oom` returns just the killed pids).

    Each child is forked, writes its own pid to ``cgroup.procs`` and sets
    ``/proc/self/oom_score_adj`` (then optionally drops to ``uid``/gid ``uid``) *before* exec;
    the exec'd Python refuses to allocate unless ``/proc/self/cgroup`` shows it in that memcg,
    renames itself with ``prctl(PR_SET_NAME)`` to ``comm`` (any bytes but NUL; UTF-8 is cut at
    15 bytes exactly as the kernel does, possibly mid-character) and appends ``chunk_bytes``
    fully written chunks until it dies.

    ``nprocs`` allocators run in parallel. ``idle`` extra siblings are started first; each holds
    ``idle_bytes`` of anonymous memory and sleeps, so the report's task table lists several
    processes and the kernel picks the victim (give a sibling ``idle_oom_score_adj=1000`` to
    make the victim differ from the task that triggered the OOM). ``idle_comm`` and
    ``idle_oom_score_adj`` take one value for all siblings or a sequence with one per sibling.

    Note: lowering ``oom_score_adj`` below 0 needs ``CAP_SYS_RESOURCE``; without it the write
    fails with EACCES and the spawn raises ``subprocess.SubprocessError``.
    """
    cg = Path(cgroup_dir)
    kpath = cgroup_kernel_path(cg, root)
    limit = read_memcg_int(cg, "memory.limit_in_bytes")
    if limit >= 1 << 62:
        # The leaf may rely on a parent's limit; demand that *some* ancestor is limited.
        limited = False
        probe = cg
        while probe != root and probe != probe.parent:
            if read_memcg_int(probe, "memory.limit_in_bytes") < 1 << 62:
                limited = True
                break
            probe = probe.parent
        if not limited:
            raise ValueError(f"{cg} and its ancestors have no memory limit; refusing to allocate")
    if nprocs < 1 or idle < 0:
        raise ValueError("need nprocs >= 1 and idle >= 0")
    alloc_comm = comm_bytes(comm)
    if idle_comm is None:
        sib_comms = [alloc_comm] * idle
    elif isinstance(idle_comm, (str, bytes)):
        sib_comms = [comm_bytes(idle_comm)] * idle
    else:
        sib_comms = [comm_bytes(c) for c in idle_comm]
        if len(sib_comms) != idle:
            raise ValueError("idle_comm sequence must have one entry per idle sibling")
    if isinstance(idle_oom_score_adj, Sequence):
        sib_adj = list(idle_oom_score_adj)
        if len(sib_adj) != idle:
            raise ValueError("idle_oom_score_adj sequence must have one entry per idle sibling")
    else:
        sib_adj = [idle_oom_score_adj] * idle
    run = OomRun(cgroup=kpath, started_monotonic=time.monotonic())
    popens: list[tuple[subprocess.Popen[bytes], ProcResult]] = []
    eff_uid = uid if uid is not None else os.geteuid()
    try:
        for i in range(idle):
            p = _spawn(cg, kpath, "idle", sib_comms[i], sib_adj[i], uid, chunk_bytes, idle_bytes, python)
            popens.append((p, ProcResult(p.pid, "idle", sib_comms[i], sib_adj[i], eff_uid)))
            _wait_ready(p, timeout)
        for _ in range(nprocs):
            p = _spawn(cg, kpath, "alloc", alloc_comm, oom_score_adj, uid, chunk_bytes, 0, python)
            popens.append((p, ProcResult(p.pid, "allocator", alloc_comm, oom_score_adj, eff_uid)))
        deadline = time.monotonic() + timeout
        for p, res in popens:
            if res.role == "allocator":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(max(0.0, deadline - time.monotonic()))
    finally:
        # Allocators still alive after the timeout, and idle siblings that survived, get SIGTERM
        # (never SIGKILL) so that returncode -9 keeps meaning "killed by the OOM killer".
        for p, _ in popens:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, res in popens:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            res.returncode = p.returncode
            if p.stderr is not None:
                res.stderr = p.stderr.read()
                p.stderr.close()
            if p.stdout is not None:
                p.stdout.close()
            run.procs.append(res)
    run.finished_monotonic = time.monotonic()
    try:
        run.failcnt = read_memcg_int(cg, "memory.failcnt")
    except OSError:
        run.failcnt = None
    for res in run.procs:
        if res.returncode in (97, 98):
            raise RuntimeError(f"child {res.pid} refused to run: {res.stderr.decode(errors='replace')}")
    return run


def run_oom(cgroup_dir: Path | str, **options: Any) -> list[int]:
    """Run allocating process(es) inside ``cgroup_dir`` until the OOM killer kills them; ``options``
    are those of :func:`run_oom_detailed`.

    Returns the pids that died of SIGKILL (returncode -9) - the helper itself only ever sends
    SIGTERM, so these are the OOM killer's victims. Use :func:`run_oom_detailed` for roles,
    comms and return codes of all children.
    """
    return run_oom_detailed(cgroup_dir, **options).killed_pids


@dataclass
class StormChild:
    index: int
    pid: int
    cgroup: str
    signal: int | None
    exit: int | None
    start_monotonic: float
    end_monotonic: float
    timeout: bool = False

    @property
    def oom_killed(self) -> bool:
        return self.signal == signal.SIGKILL and not self.timeout


@dataclass
class StormResult:
    """Accounting of :func:`oom_storm`: one entry per forked allocator."""

    children: list[StormChild]
    driver_pid: int
    started_monotonic: float
    finished_monotonic: float

    @property
    def killed_pids(self) -> list[int]:
        return [c.pid for c in self.children if c.oom_killed]


def oom_storm(
    cgroup_dirs: Sequence[Path | str],
    *,
    kills: int,
    comms: Sequence[str | bytes] = ("stormer",),
    parallel: int = 2,
    chunk_bytes: int = 1 << 20,
    oom_score_adj: int | None = None,
    timeout: float = 60.0,
    python: str = DEFAULT_PYTHON,
    root: Path = MEMCG_V1_ROOT,
) -> StormResult:
    """Cause ``kills`` OOM kills as fast as possible (to exercise the kernel's dump_header limit).

    A driver process (outside the test cgroups, allocating nothing itself) forks short-lived
    allocators without exec - round-robin over ``cgroup_dirs`` and ``comms``, ``parallel`` at a
    time. Each child joins its cgroup, verifies it did, sets ``oom_score_adj``/comm and allocates
    until killed. The result lists every child with its fate (``signal`` 9 = OOM-killed).
    """
    dirs = [Path(d) for d in cgroup_dirs]
    for d in dirs:
        if read_memcg_int(d, "memory.limit_in_bytes") >= 1 << 62:
            raise ValueError(f"{d} has no memory limit; refusing to allocate there")
    cfg = {
        "dirs": [str(d) for d in dirs],
        "kpaths": [cgroup_kernel_path(d, root) for d in dirs],
        "kills": kills,
        "parallel": parallel,
        "chunk": chunk_bytes,
        "comms": [comm_bytes(c).hex() for c in comms],
        "adj": oom_score_adj,
        "timeout": timeout,
    }
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [python, "-I", "-S", "-c", _STORM, json.dumps(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    out, err = proc.communicate(timeout=timeout + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"storm driver failed rc={proc.returncode}: {err.decode(errors='replace')}")
    data = json.loads(out)
    children = [StormChild(**c) for c in data["children"]]
    children.sort(key=lambda c: c.index)
    return StormResult(children, proc.pid, t0, time.monotonic())


@contextlib.contextmanager
def idle_holder(
    cgroup_dir: Path | str,
    *,
    comm: str | bytes = "idle",
    hold_bytes: int = 8 << 20,
    oom_score_adj: int | None = None,
    uid: int | None = None,
    timeout: float = 30.0,
    python: str = DEFAULT_PYTHON,
    root: Path = MEMCG_V1_ROOT,
) -> Iterator[ProcResult]:
    """Run one idle process holding ``hold_bytes`` in ``cgroup_dir`` for the duration of the block.

    Useful to populate a *different* cgroup of the same pod (e.g. a sidecar container) so a
    pod-level OOM's task table spans several containers. On exit the process gets SIGTERM
    (unless the OOM killer already killed it); ``returncode`` is filled in then.
    """
    cg = Path(cgroup_dir)
    kpath = cgroup_kernel_path(cg, root)
    name = comm_bytes(comm)
    proc = _spawn(cg, kpath, "idle", name, oom_score_adj, uid, 1 << 20, hold_bytes, python)
    res = ProcResult(proc.pid, "idle", name, oom_score_adj, uid if uid is not None else os.geteuid())
    try:
        _wait_ready(proc, timeout)
        yield res
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        res.returncode = proc.returncode
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
