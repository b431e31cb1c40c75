"""Private foreground rsyslog and syslog-ng instances with configs written by the test.

Installed by deploy/shippers/install.sh (called from `make test`): rsyslog from Debian packages,
syslog-ng unpacked into deploy/shippers/syslog-ng-root (the two conflict as packages). The
system's own configuration and daemons are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSLOG_NG_ROOT = ROOT / "deploy" / "shippers" / "syslog-ng-root"
PROBLEMS = ROOT / "deploy" / "shippers" / "install-problems.txt"
PORTS = range(49000, 50000)  # this suite's own port range on shared machines


def _install_note() -> str:
    note = PROBLEMS.read_text().strip() if PROBLEMS.exists() else ""
    return f" ({note})" if note else " (run `bash deploy/shippers/install.sh`, which `make test` does)"


def rsyslog_missing() -> str | None:
    if shutil.which("rsyslogd") is None:
        return "rsyslogd is not installed" + _install_note()
    return None


def omkafka_missing() -> str | None:
    if not list(Path("/usr/lib").glob("*/rsyslog/omkafka.so")):
        return "rsyslog's omkafka (rsyslog-kafka) is not installed" + _install_note()
    return None


def syslog_ng_missing() -> str | None:
    if not (SYSLOG_NG_ROOT / "usr" / "sbin" / "syslog-ng").exists():
        return f"syslog-ng is not unpacked in {SYSLOG_NG_ROOT}" + _install_note()
    return None


def free_port() -> int:
    """A free TCP and UDP port in this suite's range."""
    start = (os.getpid() * 7919 + int(time.time() * 1000)) % len(PORTS)
    for step in range(len(PORTS)):
        port = PORTS[(start + step) % len(PORTS)]
        with contextlib.ExitStack() as stack:
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 49000-49999")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


@contextlib.contextmanager
def _running(
    argv: list[str], log_path: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def rsyslog(tmp: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """``rsyslogd -n`` on ``config`` (its work directory and pid file under ``tmp``)."""
    work = tmp / "rsyslog-work"
    work.mkdir(exist_ok=True)
    conf = tmp / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{work}")\n' + config)
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslogd -N1 rejects the config:\n{check.stdout}{check.stderr}\n{config}")
    with _running(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(tmp / "rsyslog.pid")], tmp / "rsyslog.log"
    ) as proc:
        yield proc


@contextlib.contextmanager
def syslog_ng(tmp: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """syslog-ng from the private root, in the foreground, on ``config``."""
    root = SYSLOG_NG_ROOT
    conf = tmp / "syslog-ng.conf"
    conf.write_text("@version: 3.38\n" + config)
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr" / "lib" / "syslog-ng"))
    argv = [
        str(root / "usr" / "sbin" / "syslog-ng"), f"--module-path={root}/usr/lib/syslog-ng/3.38",
        "-F", "-e", "-f", str(conf), "-R", str(tmp / "syslog-ng.persist"), "-p", str(tmp / "syslog-ng.pid"),
        "-c", str(tmp / "syslog-ng.ctl"),
    ]  # fmt: skip
    with _running(argv, tmp / "syslog-ng.log", env) as proc:
        yield proc
