"""cgroup v1 memory-controller helpers: pre-flight checks and a self-cleaning ``memcg`` context."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "MEMCG_V1_ROOT",
    "OomGroupUnsupported",
    "can_cause_oom",
    "cgroup_kernel_path",
    "cgroup_procs",
    "max_safe_limit",
    "memcg",
    "oom_control",
    "read_memcg_int",
]

#: Where the cgroup v1 memory hierarchy is mounted on the test machines.
MEMCG_V1_ROOT = Path("/sys/fs/cgroup/memory")

_PAGE_COUNTER_MAX_HINT = 1 << 62  # "unlimited" in v1 reads back as 9223372036854771712


class OomGroupUnsupported(RuntimeError):
    """Raised by :func:`memcg` when ``oom_group=True`` but the hierarchy has no ``memory.oom.group``.

    cgroup v1 never had that file: group kills (``Tasks in ... are going to be killed due to
    memory.oom.group set``) can only be produced on cgroup v2.
    """


def _meminfo_kib(field: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name == field:
                    return int(rest.split()[0])
    except OSError:
        return None
    return None


def max_safe_limit() -> int:
    """Largest memcg limit (bytes) :func:`memcg` accepts: a quarter of ``MemAvailable``.

    Keeping every test cgroup far below free RAM means a test can only ever cause a memcg OOM,
    never a system-wide one.
    """
    avail = _meminfo_kib("MemAvailable") or _meminfo_kib("MemTotal") or 0
    return avail * 1024 // 4


def _memory_v1_mounted(root: Path) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 4 and fields[1] == str(root) and fields[2] == "cgroup":
                    return "memory" in fields[3].split(",")
    except OSError:
        return False
    return False


def can_cause_oom(root: Path = MEMCG_V1_ROOT) -> tuple[bool, str]:
    """Check whether this process can stage real memcg OOM kills.

    Requires: effective uid 0; the cgroup v1 memory controller mounted at ``root`` and writable
    (a probe child cgroup is created and removed again); ``/dev/kmsg`` readable.

    Returns ``(True, "")`` or ``(False, reason)`` suitable for ``pytest.skip(reason)``.
    """
    if os.geteuid() != 0:
        return False, f"needs root (euid is {os.geteuid()})"
    if not _memory_v1_mounted(root):
        return False, f"no cgroup v1 memory controller mounted at {root}"
    if not (root / "memory.limit_in_bytes").exists():
        return False, f"{root} has no memory.limit_in_bytes"
    probe = root / f"oomlab-probe-{os.getpid()}-{time.monotonic_ns()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return False, f"cannot create a cgroup under {root}: {exc}"
    try:
        (probe / "memory.limit_in_bytes").write_text(str(64 << 20))
    except OSError as exc:
        return False, f"cannot set memory.limit_in_bytes under {root}: {exc}"
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return False, f"/dev/kmsg not readable: {exc}"
    try:
        os.lseek(fd, 0, os.SEEK_END)
        try:
            os.read(fd, 8192)
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                return False, f"/dev/kmsg read failed: {exc}"
    finally:
        os.close(fd)
    return True, ""


def cgroup_kernel_path(path: Path | str, root: Path = MEMCG_V1_ROOT) -> str:
    """The path the kernel prints for a cgroup directory (``task_memcg=``, ``oom_memcg=``).

    >>> cgroup_kernel_path("/sys/fs/cgroup/memory/kubepods/pod1")
    '/kubepods/pod1'
    """
    rel = Path(path).relative_to(root)
    return "/" + str(rel) if str(rel) != "." else "/"


def cgroup_procs(path: Path) -> list[int]:
    """PIDs listed in ``cgroup.procs`` of ``path`` (empty if the cgroup vanished)."""
    try:
        text = (path / "cgroup.procs").read_text()
    except FileNotFoundError:
        return []
    return [int(tok) for tok in text.split()]


def read_memcg_int(path: Path, name: str) -> int:
    """Read a single-integer control file such as ``memory.failcnt``."""
    return int((path / name).read_text().strip())


def oom_control(path: Path) -> dict[str, int]:
    """Parse ``memory.oom_control`` (``oom_kill_disable``, ``under_oom``, ``oom_kill``).

    ``oom_kill`` counts OOM kills of tasks whose own memcg is this cgroup. On cgroup v1 it is
    *not* propagated to ancestors: with a pod-level limit firing, the container cgroup's counter
    moves and the pod cgroup's stays 0.
    """
    out: dict[str, int] = {}
    for line in (path / "memory.oom_control").read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _validate_part(part: str) -> None:
    if not part or part in (".", "..") or "/" in part or "\0" in part or "\n" in part:
        raise ValueError(f"invalid cgroup name component: {part!r}")
    if len(part.encode()) > 255:
        raise ValueError(f"cgroup name component too long: {part!r}")


def _kill_and_drain(path: Path, timeout: float) -> None:
    """Wait for ``path`` to become empty; SIGKILL whatever is left after a grace period."""
    deadline = time.monotonic() + timeout
    grace = time.monotonic() + min(1.0, timeout / 4)
    killed_once = False
    while True:
        pids = cgroup_procs(path)
        if not pids:
            return
        now = time.monotonic()
        if now >= grace and not killed_once:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed_once = True
        elif killed_once and now >= deadline:
            raise RuntimeError(f"tasks {pids} still in {path} after SIGKILL")
        elif killed_once:
            # Re-kill anything that appeared (a fork racing the first SIGKILL).
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _rmdir_tree(path: Path, timeout: float) -> None:
    """Remove ``path`` and every cgroup below it, deepest first."""
    if not path.exists():
        return
    for child in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True):
        _rmdir_tree(child, timeout)
    _kill_and_drain(path, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                raise
            _kill_and_drain(path, timeout)
            time.sleep(0.05)


@contextlib.contextmanager
def memcg(
    path_parts: Sequence[str],
    limit_bytes: int,
    *,
    oom_group: bool = False,
    limits: Mapping[int, int] | None = None,
    root: Path = MEMCG_V1_ROOT,
    cleanup_timeout: float = 15.0,
) -> Iterator[Path]:
    """Create nested memory cgroups, limit them, yield the leaf directory, remove them on exit.

    ``path_parts`` are the directory names below ``root``, e.g.
    ``["kubepods", "burstable", "pod<uid>", "<64 hex>"]``; the kernel will report the leaf as
    ``/kubepods/burstable/pod<uid>/<64 hex>``. ``limit_bytes`` is written to the leaf's
    ``memory.limit_in_bytes``. ``limits`` maps a depth index (0 = ``path_parts[0]``) of a
    *parent* level to its own limit, e.g. ``{2: 48 << 20}`` for a pod-level limit that fires
    while the victim sits in the container cgroup (``oom_memcg`` = pod, ``task_memcg`` =
    container). All limits are written right after ``mkdir`` and before anything can run inside.

    Directories that already exist are reused but never modified or removed (so concurrent tests
    may share ``kubepods``); the leaf itself must be new. ``oom_group=True`` sets
    ``memory.oom.group`` on the leaf and raises :class:`OomGroupUnsupported` on cgroup v1, which
    has no such file.

    On exit every cgroup this call created is removed, deepest first: it waits for tasks to leave,
    SIGKILLs leftovers, and retries ``rmdir`` while the kernel reports ``EBUSY``. Parents that
    other users populated in the meantime are left in place.
    """
    parts = list(path_parts)
    if not parts:
        raise ValueError("path_parts must not be empty")
    for part in parts:
        _validate_part(part)
    extra = dict(limits or {})
    leaf_index = len(parts) - 1
    for index, value in extra.items():
        if not 0 <= index < leaf_index:
            raise ValueError(f"limits key {index} is not a parent depth (0..{leaf_index - 1})")
        if value <= 0:
            raise ValueError(f"limit for depth {index} must be positive")
    if limit_bytes <= 0:
        raise ValueError("limit_bytes must be positive")
    # The leaf must be capped by something small: its own limit or a parent's.
    effective = min([limit_bytes, *extra.values()])
    cap = max_safe_limit()
    if effective > cap:
        raise ValueError(f"effective limit {effective} exceeds the safety cap {cap} (MemAvailable/4)")
    # v1 never has memory.oom.group; check the root so nothing is created before failing.
    if oom_group and not _memory_oom_group_possible(root):
        raise OomGroupUnsupported(f"{root} (cgroup v1) has no memory.oom.group")

    swap_total = _meminfo_kib("SwapTotal") or 0
    created: list[Path] = []
    current = root
    try:
        for index, part in enumerate(parts):
            current = current / part
            is_leaf = index == leaf_index
            if current.exists():
                if is_leaf:
                    raise FileExistsError(f"leaf cgroup {current} already exists")
                if index in extra:
                    raise FileExistsError(f"refusing to set a limit on pre-existing cgroup {current}")
                continue
            current.mkdir()
            created.append(current)
            wanted = limit_bytes if is_leaf else extra.get(index)
            if wanted is not None:
                (current / "memory.limit_in_bytes").write_text(str(wanted))
                got = read_memcg_int(current, "memory.limit_in_bytes")
                if got > wanted or got >= _PAGE_COUNTER_MAX_HINT:
                    raise RuntimeError(f"limit on {current} reads back as {got}, wanted {wanted}")
                memsw = current / "memory.memsw.limit_in_bytes"
                if swap_total and memsw.exists():
                    memsw.write_text(str(wanted))
            if is_leaf and oom_group:
                (current / "memory.oom.group").write_text("1")
        yield current
    finally:
        errors: list[BaseException] = []
        for path in reversed(created):
            try:
                if path == current:
                    # The leaf is ours alone: remove it with everything below it.
                    _rmdir_tree(path, cleanup_timeout)
                elif not any(p.is_dir() for p in path.iterdir()):
                    # A parent we created; a concurrent user may have added children, in
                    # which case it stays (it is then theirs to use, empty dirs are harmless).
                    _kill_and_drain(path, cleanup_timeout)
                    path.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY) and path != current:
                    continue
                errors.append(exc)
            except RuntimeError as exc:
                errors.append(exc)
        if errors:
            raise RuntimeError(f"memcg cleanup failed: {errors!r}")


def _memory_oom_group_possible(root: Path) -> bool:
    """True when ``root`` is a cgroup v2 hierarchy (where ``memory.oom.group`` exists below root)."""
    return (root / "cgroup.controllers").exists() and "memory" in (
        (root / "cgroup.controllers").read_text().split()
    )
