"""Start/stop a private systemd-journald for tests and dump kernel records through journalctl."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "JOURNALD_BINARY",
    "JournaldStatus",
    "journal_kernel",
    "journal_kernel_entries",
    "journal_message_bytes",
    "journalctl",
    "journald_pids",
    "journald_running",
    "private_journald",
    "start_journald",
    "stop_journald",
    "wait_journal",
]

JOURNALD_BINARY = "/usr/lib/systemd/systemd-journald"
_SOCKET = Path("/run/systemd/journal/socket")


@dataclass
class JournaldStatus:
    """Result of :func:`start_journald`; truthy when a journald is usable.

    ``started_by_us`` tells whether :func:`stop_journald` will stop it; ``reason`` explains a
    failure (or says that an already running instance was reused).
    """

    ok: bool
    reason: str = ""
    pid: int | None = None
    started_by_us: bool = False

    def __bool__(self) -> bool:
        return self.ok


_started: subprocess.Popen[bytes] | None = None


def journald_pids() -> list[int]:
    """PIDs of running ``systemd-journald`` processes (comm is cut to ``systemd-journal``)."""
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as fh:
                comm = fh.read().rstrip(b"\n")
        except OSError:
            continue
        if comm == b"systemd-journal":
            pids.append(int(entry))
    return pids


def journald_running() -> bool:
    """True if a systemd-journald process runs and its native socket exists."""
    return bool(journald_pids()) and _SOCKET.exists()


def journalctl(*args: str, check: bool = True, timeout: float = 60.0) -> bytes:
    """Run ``journalctl --no-pager ARGS`` and return stdout (bytes, exactly as printed)."""
    exe = shutil.which("journalctl")
    if exe is None:
        raise FileNotFoundError("journalctl not installed")
    proc = subprocess.run(
        [exe, "--no-pager", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"journalctl {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _journal_works() -> bool:
    try:
        journalctl("-k", "-n", "1", "-o", "json", timeout=10)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return True


def start_journald(timeout: float = 15.0) -> JournaldStatus:
    """Make sure a systemd-journald runs (reading ``/dev/kmsg``), starting a private one if needed.

    Reuses a running instance (``started_by_us=False``). Otherwise starts
    ``/usr/lib/systemd/systemd-journald`` in its own session and waits until its socket exists
    and ``journalctl -k`` answers. Never raises for environmental problems: returns a falsy
    status with ``reason`` (not root, binary missing, did not come up...).
    """
    global _started
    if journald_running():
        pids = journald_pids()
        return JournaldStatus(True, "already running", pids[0] if pids else None, _started is not None)
    if os.geteuid() != 0:
        return JournaldStatus(False, "starting systemd-journald needs root")
    if not os.access(JOURNALD_BINARY, os.X_OK):
        return JournaldStatus(False, f"{JOURNALD_BINARY} not found")
    if shutil.which("journalctl") is None:
        return JournaldStatus(False, "journalctl not found")
    if not os.access("/dev/kmsg", os.R_OK):
        return JournaldStatus(False, "/dev/kmsg not readable, journald would see no kernel records")
    os.makedirs("/run/systemd/journal", exist_ok=True)
    try:
        proc = subprocess.Popen(
            [JOURNALD_BINARY],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
    except OSError as exc:
        return JournaldStatus(False, f"cannot exec {JOURNALD_BINARY}: {exc}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return JournaldStatus(False, f"systemd-journald exited with {proc.returncode}")
        if _SOCKET.exists() and _journal_works():
            _started = proc
            return JournaldStatus(True, "started", proc.pid, True)
        time.sleep(0.1)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return JournaldStatus(False, "systemd-journald did not become ready")


def stop_journald(timeout: float = 10.0) -> bool:
    """Stop the journald started by :func:`start_journald` (never one we did not start).

    Returns True if an instance was stopped.
    """
    global _started
    proc = _started
    if proc is None:
        return False
    _started = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return True


@contextlib.contextmanager
def private_journald() -> Iterator[JournaldStatus]:
    """Context manager: ``start_journald()`` on entry, ``stop_journald()`` on exit if we started it."""
    status = start_journald()
    try:
        yield status
    finally:
        if status.started_by_us:
            stop_journald()


def journal_kernel(output: str = "json", *, extra: Sequence[str] = ()) -> bytes:
    """``journalctl -k -o OUTPUT [EXTRA...]`` as raw bytes (e.g. ``short-monotonic``, ``export``)."""
    return journalctl("-k", "-o", output, *extra)


def journal_message_bytes(entry: dict[str, Any]) -> bytes:
    """``MESSAGE`` of a JSON entry as bytes (journalctl emits a list of ints for non-UTF-8 data)."""
    msg = entry.get("MESSAGE")
    if isinstance(msg, str):
        return msg.encode("utf-8")
    if isinstance(msg, list):
        return bytes(int(b) for b in msg)
    return b""


def journal_kernel_entries(*, extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Kernel entries of the current boot as parsed ``journalctl -k -o json`` objects."""
    out: list[dict[str, Any]] = []
    for line in journal_kernel("json", extra=extra).splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def wait_journal(
    predicate: Callable[[dict[str, Any]], bool],
    *,
    count: int = 1,
    timeout: float = 15.0,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Poll ``journalctl -k -o json`` until ``count`` entries match ``predicate``; return them all."""
    deadline = time.monotonic() + timeout
    while True:
        entries = journal_kernel_entries(extra=extra)
        if sum(1 for e in entries if predicate(e)) >= count or time.monotonic() >= deadline:
            return entries
        time.sleep(0.2)
