"""Regenerate the real OOM-kill captures in ``tests/data/real``.

    python -m tests.oomlab.capture --list
    python -m tests.oomlab.capture [SCENARIO ...]     # default: all

Each scenario stages genuine memcg OOM kills (see :mod:`tests.oomlab`) and writes the *same*
stretch of the kernel log in every available format, plus ``<scenario>.meta.json`` describing how
it was made and the facts a parser must extract. The stretch is delimited by two user-space
marker records written to ``/dev/kmsg`` (``oomlab: <scenario> begin|end <token>``); between them
there are a few unrelated, genuine kernel lines (a CNI-style bridge/veth being set up in a private
network namespace before the OOM, a segfault and the veth teardown after it). Every format is cut
at the lines holding the two markers; nothing inside is edited.

Needs root, cgroup v1 memory + blkio controllers, systemd-journald (a private one is started if
none runs) and optionally rsyslogd (started privately with imklog; formats are skipped with a
reason when it cannot run).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from ._cgroup import can_cause_oom, cgroup_kernel_path, memcg
from ._journald import journalctl, start_journald, stop_journald
from ._k8s import cgroupfs_parts, container_id, pod_uid, systemd_parts
from ._kmsg import KmsgRecord, KmsgTail
from ._procs import DEFAULT_PYTHON, OomRun, comm_bytes, idle_holder, oom_storm, run_oom_detailed
from ._reaper import stuck_victim
from ._report import KillEvent, comm_text, scan_records

OUT_DIR = Path(__file__).resolve().parents[1] / "data" / "real"
RSYSLOG_DIR = Path("/var/tmp/oomlab-rsyslog")
MiB = 1 << 20
RATELIMIT_PAUSE = 6.0  # > DEFAULT_RATELIMIT_INTERVAL (5 s) of the kernel's oom_rs

# rsyslog's RSYSLOG_TraditionalForwardFormat has no trailing LF (it is meant for the wire);
# this is the same template with one, so the file holds one RFC 3164 message per line.
_RFC3164_TEMPLATE = "<%PRI%>%TIMESTAMP% %HOSTNAME% %syslogtag:1:32%%msg:::sp-if-no-1st-sp%%msg%\\n"


@dataclass(frozen=True)
class Fmt:
    ext: str
    format: str
    command: str
    source: str  # "kmsg" | "dmesg" | "journal" | "rsyslog"


FORMATS: tuple[Fmt, ...] = (
    Fmt(
        ".kmsg",
        "kmsg",
        "raw read(2) records of /dev/kmsg (O_RDONLY|O_NONBLOCK, lseek SEEK_END before the scenario), "
        "concatenated verbatim",
        "kmsg",
    ),
    Fmt(".dmesg", "dmesg", "LANG=C.UTF-8 dmesg", "dmesg"),
    Fmt(".dmesg-T", "dmesg-T", "LANG=C.UTF-8 TZ=UTC dmesg -T", "dmesg"),
    Fmt(".journal.json", "journal-json", "journalctl -k -o json", "journal"),
    Fmt(".journal-short.txt", "journalctl-short", "journalctl -k -o short", "journal"),
    Fmt(".journal-short-iso.txt", "journalctl-short-iso", "journalctl -k -o short-iso", "journal"),
    Fmt(
        ".journal-short-precise.txt", "journalctl-short-precise", "journalctl -k -o short-precise", "journal"
    ),
    Fmt(
        ".journal-short-monotonic.txt",
        "journalctl-short-monotonic",
        "journalctl -k -o short-monotonic",
        "journal",
    ),
    Fmt(
        ".syslog3164",
        "syslog-rfc3164",
        "rsyslogd (imklog) omfile with template string '" + _RFC3164_TEMPLATE + "' "
        "(RSYSLOG_TraditionalForwardFormat plus LF; in rsyslog.conf syntax)",
        "rsyslog",
    ),
    Fmt(
        ".syslog5424",
        "syslog-rfc5424",
        "rsyslogd (imklog) omfile template RSYSLOG_SyslogProtocol23Format",
        "rsyslog",
    ),
    Fmt(
        ".kern-log",
        "syslog-file-traditional",
        "rsyslogd (imklog) omfile template RSYSLOG_TraditionalFileFormat (Ubuntu's /var/log/kern.log)",
        "rsyslog",
    ),
    Fmt(
        ".kern-log-rfc3339",
        "syslog-file-rfc3339",
        "rsyslogd (imklog) omfile template RSYSLOG_FileFormat (Debian 12's default file format)",
        "rsyslog",
    ),
)
DMESG_C = Fmt(".dmesg-Clocale", "dmesg", "LC_ALL=C dmesg (non-ASCII bytes printed as \\xNN)", "dmesg")


# ----------------------------------------------------------------------------------------------
# unrelated context lines


def kmsg_write(text: str, prio: int = 14) -> None:
    """Write one user-space record to /dev/kmsg (facility user, so never mistaken for the kernel)."""
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, f"<{prio}>{text}\n".encode())
    finally:
        os.close(fd)


def segfault() -> None:
    """Make a throw-away process segfault (the kernel logs ``<comm>[pid]: segfault at 0 ...``)."""

    def _nocore() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    subprocess.run(
        [DEFAULT_PYTHON, "-I", "-S", "-c", "import ctypes; ctypes.string_at(0)"],
        preexec_fn=_nocore,
        cwd="/",
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class CniSandbox:
    """A bridge + veth pair in a private network namespace, like a CNI pod sandbox.

    Setting it up and tearing it down makes the kernel log genuine, unrelated lines
    (``cni0: port 1(vethXXXXXXXX) entered forwarding state`` ...) without touching the host's
    network (the namespace dies with the helper process).
    """

    _SCRIPT = (
        "set -e; ip link add cni0 type bridge; ip link add {veth} type veth peer name eth0; "
        "ip link set {veth} master cni0; ip link set cni0 up; ip link set {veth} up; ip link set eth0 up; "
        "echo up; read x; ip link del {veth}; ip link del cni0; echo down"
    )

    def __init__(self) -> None:
        self.veth = "veth" + secrets.token_hex(4)
        self.proc: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", self._SCRIPT.format(veth=self.veth)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"up":
            raise RuntimeError("CNI sandbox failed to come up")

    def down(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"x\n")
        proc.stdin.close()
        proc.stdout.read()
        proc.stdout.close()
        proc.wait(30)


# ----------------------------------------------------------------------------------------------
# rsyslog


class Rsyslog:
    """A private rsyslogd with imklog (reads /proc/kmsg) writing four differently formatted files."""

    FILES: ClassVar[dict[str, str]] = {
        ".syslog3164": "rfc3164.log",
        ".syslog5424": "rfc5424.log",
        ".kern-log": "kern.log",
        ".kern-log-rfc3339": "kern-rfc3339.log",
    }

    def __init__(self, workdir: Path = RSYSLOG_DIR) -> None:
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.reason = ""
        self.version = ""

    def path(self, ext: str) -> Path:
        return self.dir / self.FILES[ext]

    def start(self) -> bool:
        exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not os.access(exe, os.X_OK):
            self.reason = "rsyslogd not installed"
            return False
        readers = _proc_kmsg_readers()
        if readers:
            self.reason = f"/proc/kmsg already read by pids {readers}; a second imklog would steal records"
            return False
        ver = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False).stdout
        self.version = " ".join(ver.split("\n")[0].replace("compiled with:", "").split())
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "work").mkdir(parents=True)
        conf = self.dir / "rsyslog.conf"
        lines = [
            f'global(workDirectory="{self.dir / "work"}")',
            'module(load="imklog" permitnonkernelfacility="on")',
            f'template(name="oomlab_rfc3164" type="string" string="{_RFC3164_TEMPLATE}")',
            f'*.* action(type="omfile" file="{self.path(".syslog3164")}" template="oomlab_rfc3164")',
            f'*.* action(type="omfile" file="{self.path(".syslog5424")}" template="RSYSLOG_SyslogProtocol23Format")',
            f'*.* action(type="omfile" file="{self.path(".kern-log")}" template="RSYSLOG_TraditionalFileFormat")',
            f'*.* action(type="omfile" file="{self.path(".kern-log-rfc3339")}" template="RSYSLOG_FileFormat")',
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [exe, "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "rsyslogd.stderr", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        token = "rsyslog-ready-" + secrets.token_hex(4)
        kmsg_write(f"oomlab: {token}")
        try:
            self.wait_for(token.encode(), timeout=20)
        except TimeoutError:
            self.stop()
            self.reason = "rsyslogd did not write the probe record within 20 s"
            return False
        return True

    def wait_for(self, needle: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.exists() and needle in p.read_bytes() for p in map(self.path, self.FILES)):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise TimeoutError("rsyslogd died")
            time.sleep(0.1)
        raise TimeoutError(f"{needle!r} not in rsyslog files")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _proc_kmsg_readers() -> list[int]:
    out: list[int] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == "/proc/kmsg":
                        out.append(int(pid))
                        break
    return out


# ----------------------------------------------------------------------------------------------
# accounting


@dataclass
class Proc:
    pid: int
    role: str  # allocator | idle | stuck-victim | storm-child
    comm: bytes
    oom_score_adj: int | None  # what we wrote (None: inherited 0)
    uid: int
    cgroup: str
    returncode: int | None

    @property
    def oom_killed(self) -> bool:
        return self.returncode == -9

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "role": self.role,
            "comm": comm_text(self.comm),
            "comm_hex": self.comm.hex(),
            "oom_score_adj": self.oom_score_adj if self.oom_score_adj is not None else 0,
            "oom_score_adj_written": self.oom_score_adj is not None,
            "uid": self.uid,
            "cgroup": self.cgroup,
            "returncode": self.returncode,
            "oom_killed": self.oom_killed,
        }


@dataclass
class Acct:
    cgroup_driver: str
    path_shape: str
    cgroups: list[dict[str, Any]] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    oom_memcg_of: dict[str, str] = field(default_factory=dict)
    expect_reaped: list[int] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_cgroup(self, path: Path, limit: int | None, level: str, oom_memcg: str | None = None) -> str:
        kpath = cgroup_kernel_path(path)
        self.cgroups.append({"path": kpath, "limit_bytes": limit, "level": level})
        if level == "container":
            self.oom_memcg_of[kpath] = oom_memcg or kpath
        return kpath

    def add_run(self, run: OomRun) -> None:
        for p in run.procs:
            self.procs.append(Proc(p.pid, p.role, p.comm, p.oom_score_adj, p.uid, run.cgroup, p.returncode))

    @property
    def killed(self) -> list[Proc]:
        return [p for p in self.procs if p.oom_killed]


CHILD_CMD = (
    f"{DEFAULT_PYTHON} -I -S -c <oomlab child> (forked; writes its pid to <cgroup>/cgroup.procs and "
    "/proc/self/oom_score_adj before exec, optional setuid; prctl(PR_SET_NAME, comm); appends "
    "fully-written 1 MiB bytes objects until killed)"
)


# ----------------------------------------------------------------------------------------------
# scenarios


def _k8s_uid() -> int:
    """uid of the (non-root) container user in most scenarios."""
    return 65534


def sc_cgroupfs_burstable() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex>")
    with memcg(cgroupfs_parts("burstable", u, c), 64 * MiB) as cg:
        acct.add_cgroup(cg, 64 * MiB, "container")
        acct.add_run(run_oom_detailed(cg, comm="python3", oom_score_adj=968, uid=_k8s_uid()))
    acct.commands.append(CHILD_CMD)
    return acct


def sc_cgroupfs_guaranteed() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("cgroupfs", "/kubepods/pod<uid>/<64hex>")
    with memcg(cgroupfs_parts("guaranteed", u, c), 96 * MiB) as cg:
        acct.add_cgroup(cg, 96 * MiB, "container")
        acct.add_run(run_oom_detailed(cg, comm="redis-server", uid=999))
    acct.commands.append(CHILD_CMD)
    acct.notes.append(
        "Kubernetes gives Guaranteed containers oom_score_adj -997, but this VM's root lacks "
        "CAP_SYS_RESOURCE (CapEff 0x1fffeffffff), so any write below 0 to /proc/self/oom_score_adj "
        "fails with EACCES; the victim keeps the inherited 0. No capture here has a negative "
        "oom_score_adj."
    )
    acct.extra["oom_score_adj_requested"] = -997
    return acct


def sc_cgroupfs_besteffort() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("cgroupfs", "/kubepods/besteffort/pod<uid>/<64hex>")
    with memcg(cgroupfs_parts("besteffort", u, c), 48 * MiB) as cg:
        acct.add_cgroup(cg, 48 * MiB, "container")
        acct.add_run(run_oom_detailed(cg, comm="node", oom_score_adj=1000, uid=1000))
    acct.commands.append(CHILD_CMD)
    return acct


def _sc_systemd(qos: Any, runtime: Any, comm: str, adj: int | None, shape: str) -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("systemd", shape)
    with memcg(systemd_parts(qos, u, c, runtime), 64 * MiB) as cg:
        acct.add_cgroup(cg, 64 * MiB, "container")
        acct.add_run(run_oom_detailed(cg, comm=comm, oom_score_adj=adj, uid=_k8s_uid()))
    acct.commands.append(CHILD_CMD)
    acct.notes.append("systemd-driver names are plain directories in the cgroup v1 memory hierarchy here")
    return acct


def sc_systemd_containerd() -> Acct:
    return _sc_systemd(
        "burstable",
        "cri-containerd",
        "python3",
        984,
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<64hex>.scope",
    )


def sc_systemd_crio() -> Acct:
    acct = _sc_systemd(
        "guaranteed",
        "crio",
        "java",
        None,
        "/kubepods.slice/kubepods-pod<uid_>.slice/crio-<64hex>.scope",
    )
    acct.notes.append("Guaranteed pod: oom_score_adj would be -997 on a real node; not settable here")
    return acct


def sc_systemd_docker() -> Acct:
    return _sc_systemd(
        "besteffort",
        "docker",
        "ruby",
        1000,
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/docker-<64hex>.scope",
    )


def sc_multi_proc() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex>")
    with memcg(cgroupfs_parts("burstable", u, c), 128 * MiB) as cg:
        acct.add_cgroup(cg, 128 * MiB, "container")
        run = run_oom_detailed(
            cg,
            comm="gunicorn",
            idle=3,
            idle_comm=["tini", "gunicorn", "nginx"],
            idle_bytes=16 * MiB,
            oom_score_adj=990,
            idle_oom_score_adj=990,
            uid=_k8s_uid(),
        )
        acct.add_run(run)
    acct.commands.append(CHILD_CMD + "; 3 idle siblings hold 16 MiB each and sleep, started first")
    acct.notes.append("all tasks share oom_score_adj 990; the kernel picks the largest RSS (the allocator)")
    return acct


def sc_victim_not_trigger() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex>")
    with memcg(cgroupfs_parts("burstable", u, c), 128 * MiB) as cg:
        acct.add_cgroup(cg, 128 * MiB, "container")
        run = run_oom_detailed(
            cg,
            comm="celery",
            idle=3,
            idle_comm=["supervisord", "celery-beat", "flower"],
            idle_bytes=16 * MiB,
            idle_oom_score_adj=[None, 1000, None],
            uid=_k8s_uid(),
        )
        acct.add_run(run)
    acct.commands.append(CHILD_CMD + "; 3 idle siblings (16 MiB each), one with oom_score_adj 1000")
    acct.notes.append(
        "first kill: the idle sibling with oom_score_adj 1000 (victim != trigger); the allocator keeps "
        "going and is killed by the second OOM"
    )
    return acct


def _one_kill_per_comm(comms: tuple[bytes, ...]) -> Acct:
    """One pod, one container (and kill) per comm, sequentially."""
    u = pod_uid()
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex> (one container per comm)")
    for comm in comms:
        with memcg(cgroupfs_parts("burstable", u, container_id()), 48 * MiB) as cg:
            acct.add_cgroup(cg, 48 * MiB, "container")
            acct.add_run(run_oom_detailed(cg, comm=comm, uid=_k8s_uid()))
    acct.commands.append(CHILD_CMD + "; one kill per comm, sequentially")
    acct.extra["comms_requested"] = [comm_text(c) for c in comms]
    return acct


ODD_COMMS: tuple[bytes, ...] = (
    b"Plex Media Serv",
    b"a(b) c",
    b"x) total-vm:1k",
    "wörker.1".encode(),
    b"node.js-v18.x",
    b"kworker/u8:3",
    b"abcdefghijklmno",
    b"very-long-process-name",  # cut to 15 bytes by the kernel
)


def sc_odd_comms() -> Acct:
    acct = _one_kill_per_comm(ODD_COMMS)
    acct.notes.append("comm is set with prctl(PR_SET_NAME); the kernel keeps at most 15 bytes")
    return acct


BROKEN_COMMS: tuple[bytes, ...] = (
    "ääääääää".encode(),  # 16 bytes: cut to 15 = 7 x 'ä' + a lone 0xc3
    "日本語のプロセス".encode(),  # 24 bytes: cut to 15 = 5 characters exactly
    "Ωmega-λ".encode(),
)


def sc_utf8_comms() -> Acct:
    acct = _one_kill_per_comm(BROKEN_COMMS)
    acct.notes.append(
        "the kernel cuts comm at 15 *bytes*: 'ääääääää' becomes 7 x 'ä' plus a lone 0xc3 byte, i.e. "
        "invalid UTF-8 (journalctl -o json then emits MESSAGE as an array of byte values and the short "
        "formats print '[N blob data]')"
    )
    return acct


CONTROL_COMMS: tuple[bytes, ...] = (b"tab\there", b"nl\nfake: line", b"back\\slash")


def sc_control_comms() -> Acct:
    acct = _one_kill_per_comm(CONTROL_COMMS)
    acct.notes.append(
        "comm containing TAB, LF and backslash: /dev/kmsg escapes them as \\x09 \\x0a \\x5c; dmesg "
        "unescapes and prints the LF raw (the record spans two output lines); /proc/kmsg (rsyslog "
        "imklog) splits the record into separate lines"
    )
    return acct


def sc_pod_limit() -> Acct:
    u = pod_uid()
    app, sidecar = container_id(), container_id()
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex> with a pod-level limit")
    pod_limit, ctr_limit = 96 * MiB, 256 * MiB
    app_parts = cgroupfs_parts("burstable", u, app)
    with memcg(app_parts, ctr_limit, limits={2: pod_limit}) as cg:
        pod_dir = cg.parent
        pod_k = acct.add_cgroup(pod_dir, pod_limit, "pod")
        acct.add_cgroup(cg, ctr_limit, "container", oom_memcg=pod_k)
        with memcg(cgroupfs_parts("burstable", u, sidecar), 64 * MiB) as sc_cg:
            sc_k = acct.add_cgroup(sc_cg, 64 * MiB, "container", oom_memcg=pod_k)
            with idle_holder(sc_cg, comm="envoy", hold_bytes=24 * MiB, oom_score_adj=968, uid=101) as env:
                run = run_oom_detailed(cg, comm="python3", oom_score_adj=968, uid=_k8s_uid())
            acct.add_run(run)
            acct.procs.append(Proc(env.pid, "idle", env.comm, 968, 101, sc_k, env.returncode))
    acct.commands.append(CHILD_CMD + "; a sidecar container holds 24 MiB (comm envoy, uid 101)")
    acct.notes.append(
        "pod cgroup limit 96 MiB < container limit 256 MiB: the pod limit fires, oom_memcg is the pod, "
        "task_memcg the container; the task table spans both containers. memory.oom_control oom_kill "
        "is counted on the container cgroup only (v1 does not propagate it)"
    )
    return acct


def sc_storm() -> Acct:
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex> (2 pods x 2 containers)")
    limit = 32 * MiB
    with contextlib.ExitStack() as stack:
        dirs: list[Path] = []
        for _ in range(2):
            u = pod_uid()
            for _ in range(2):
                cg = stack.enter_context(memcg(cgroupfs_parts("burstable", u, container_id()), limit))
                acct.add_cgroup(cg, limit, "container")
                dirs.append(cg)
        comms = ("worker", "python3")
        res = oom_storm(dirs, kills=60, parallel=4, comms=comms, oom_score_adj=999)
        for ch in res.children:
            acct.procs.append(
                Proc(
                    ch.pid,
                    "storm-child",
                    comm_bytes(comms[ch.index % len(comms)]),
                    999,
                    0,
                    cgroup_kernel_path(Path(ch.cgroup)),
                    -ch.signal if ch.signal is not None else ch.exit,
                )
            )
        storm_secs = res.children[-1].end_monotonic - res.children[0].start_monotonic if res.children else 0.0
        time.sleep(RATELIMIT_PAUSE)
        # One more kill after the rate-limit interval: its header comes back, preceded by the
        # kernel's "<func>: N callbacks suppressed" line.
        after = run_oom_detailed(dirs[0], comm="worker", oom_score_adj=999)
        acct.add_run(after)
    acct.commands.append(
        f"{DEFAULT_PYTHON} -I -S -c <oomlab storm driver>: forks allocators without exec, 4 at a time, "
        "round-robin over the 4 containers; each child joins its cgroup, sets oom_score_adj 999 and "
        "comm (worker/python3 alternating) and allocates 1 MiB chunks until killed"
    )
    acct.commands.append(
        f"then {RATELIMIT_PAUSE:.0f} s pause and one more kill (comm worker) in the first container"
    )
    acct.extra["storm"] = {
        "kills_planned": 60,
        "storm_children": len(res.children),
        "storm_kills_accounted": len(res.killed_pids),
        "storm_seconds": round(storm_secs, 3),
        "after_pause_kills_accounted": len(after.killed_pids),
        "ratelimit": "kernel oom_rs: DEFAULT_RATELIMIT_INTERVAL 5 s, DEFAULT_RATELIMIT_BURST 10 (dump_header)",
    }
    acct.notes.append(
        "dump_header() is rate limited (10 per 5 s, shared by every OOM on the machine): most storm kills "
        "have no header, only the bare 'Memory cgroup out of memory: Killed process' line"
    )
    return acct


def sc_reaper() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct("cgroupfs", "/kubepods/burstable/pod<uid>/<64hex>")
    with memcg(cgroupfs_parts("burstable", u, c), 512 * MiB) as cg:
        k = acct.add_cgroup(cg, 512 * MiB, "container")
        with stuck_victim(cg, hold_bytes=300 * MiB, comm="java", oom_score_adj=500) as v:
            run = run_oom_detailed(cg, comm="python3", chunk_bytes=4 * MiB, timeout=90)
        acct.procs.append(Proc(v.pid, "stuck-victim", v.comm, 500, 0, k, v.returncode))
        acct.add_run(run)
        acct.expect_reaped.append(v.pid)
    acct.commands.append(
        "victim: python holding 300 MiB (comm java, oom_score_adj 500) with one thread in D state on an "
        "O_DIRECT read held back by a blkio.throttle.read_bps_device 4096 B/s rule (that thread only); "
        "then " + CHILD_CMD + " (4 MiB chunks, comm python3)"
    )
    acct.notes.append(
        "the kernel's oom_reaper waits 2 s before reaping; a victim that exits by itself frees its memory "
        "first and no 'oom_reaper: reaped process' line is printed (a plain 512 MiB victim showed none). "
        "Here the D-state thread pins the mm, so the reaper reaps it ~2 s after the kill"
    )
    return acct


def sc_nested_lxc() -> Acct:
    u, c = pod_uid(), container_id()
    acct = Acct(
        "systemd",
        "/lxc.payload.node1/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/"
        "cri-containerd-<64hex>.scope",
    )
    parts = systemd_parts("burstable", u, c, "cri-containerd", prefix=("lxc.payload.node1",))
    with memcg(parts, 64 * MiB) as cg:
        acct.add_cgroup(cg, 64 * MiB, "container")
        acct.add_run(run_oom_detailed(cg, comm="python3", oom_score_adj=979, uid=_k8s_uid()))
    acct.commands.append(CHILD_CMD)
    acct.notes.append("k8s node running inside an LXC container: every path has the lxc.payload prefix")
    return acct


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[], Acct]
    c_locale_dmesg: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("s01-cgroupfs-burstable", "cgroupfs driver, Burstable pod, comm python3", sc_cgroupfs_burstable),
    Scenario(
        "s02-cgroupfs-guaranteed", "cgroupfs driver, Guaranteed pod (no QoS level)", sc_cgroupfs_guaranteed
    ),
    Scenario(
        "s03-cgroupfs-besteffort",
        "cgroupfs driver, BestEffort pod, oom_score_adj 1000",
        sc_cgroupfs_besteffort,
    ),
    Scenario(
        "s04a-systemd-containerd", "systemd driver, Burstable, cri-containerd scope", sc_systemd_containerd
    ),
    Scenario("s04b-systemd-crio", "systemd driver, Guaranteed, crio scope", sc_systemd_crio),
    Scenario("s04c-systemd-docker", "systemd driver, BestEffort, docker scope", sc_systemd_docker),
    Scenario("s05a-multi-process", "4 tasks in one container, kernel picks the allocator", sc_multi_proc),
    Scenario(
        "s05b-victim-not-trigger",
        "4 tasks, an idle oom_score_adj=1000 sibling dies first",
        sc_victim_not_trigger,
    ),
    Scenario(
        "s06a-odd-comms",
        "comm with spaces, parentheses, ') total-vm:', dots, slash, UTF-8",
        sc_odd_comms,
        True,
    ),
    Scenario(
        "s06b-utf8-comms", "non-ASCII comms, one cut mid-character (invalid UTF-8)", sc_utf8_comms, True
    ),
    Scenario("s06c-control-comms", "comm with TAB, LF and backslash", sc_control_comms, True),
    Scenario("s07-pod-limit", "pod-level limit fires, victim in a container cgroup", sc_pod_limit),
    Scenario("s08-storm", "60 kills in a few seconds: rate-limited headers", sc_storm),
    Scenario("s09-oom-reaper", "oom_reaper reaps a victim stuck in D state", sc_reaper),
    Scenario("s10-nested-lxc", "systemd-driver paths under an lxc.payload prefix", sc_nested_lxc),
)


# ----------------------------------------------------------------------------------------------
# capture machinery


@dataclass
class Env:
    rsyslog: Rsyslog
    journald_reason: str
    journald_ok: bool
    last_oom: float = 0.0


def _run(cmd: list[str], env: dict[str, str] | None = None) -> bytes:
    full = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, check=True, env=full, stdin=subprocess.DEVNULL).stdout


def _cut(data: bytes, begin: bytes, end: bytes) -> bytes:
    """Lines from the one containing ``begin`` to the one containing ``end`` (inclusive)."""
    lines = data.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if begin in line]
    ends = [i for i, line in enumerate(lines) if end in line]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"markers not found exactly once (begin {len(starts)}, end {len(ends)})")
    return b"".join(lines[starts[0] : ends[0] + 1])


def _journal_has(token: bytes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if token in journalctl("-k", "-o", "cat", "-n", "200"):
            return
        time.sleep(0.2)
    raise TimeoutError("journald did not record the end marker")


def _wait_kills(tail: KmsgTail, acct: Acct, timeout: float = 30.0) -> None:
    mine = {p.pid for p in acct.killed}
    reaped = set(acct.expect_reaped)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tail.read_new()
        scan = scan_records(tail.records)
        seen = {k.killed["pid"] for k in scan.kills}
        seen_reaped = {k.killed["pid"] for k in scan.kills if k.reaped is not None}
        if mine <= seen and reaped <= seen_reaped:
            return
        time.sleep(0.1)
    raise TimeoutError("not all kills appeared in /dev/kmsg")


def _check(cond: bool, what: str, checks: dict[str, int], pid: int | None = None) -> None:
    """Record a passed cross-check (counted per kind) or abort the capture."""
    if not cond:
        raise AssertionError(f"check failed: {what}" + (f" (pid {pid})" if pid is not None else ""))
    checks[what] = checks.get(what, 0) + 1


def _expected(acct: Acct, window: list[KmsgRecord]) -> tuple[dict[str, Any], dict[str, int]]:
    scan = scan_records(window)
    by_pid = {p.pid: p for p in acct.procs}
    limits = {c["path"]: c["limit_bytes"] for c in acct.cgroups}
    checks: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    foreign: list[dict[str, Any]] = []

    def mine(ev: KillEvent) -> bool:
        return ev.killed["pid"] in by_pid

    for ev in scan.kills:
        if not mine(ev):
            foreign.append({"pid": ev.killed["pid"], "comm": ev.killed["comm"], "seq": ev.killed_seq})
            continue
        p = by_pid[ev.killed["pid"]]
        k = ev.killed
        _check(p.oom_killed, "victim died of SIGKILL in our accounting", checks, p.pid)
        _check(bytes.fromhex(k["comm_hex"]) == p.comm, "Killed-line comm == comm we set", checks, p.pid)
        adj = p.oom_score_adj if p.oom_score_adj is not None else 0
        _check(k["oom_score_adj"] == adj, "Killed-line oom_score_adj == ours", checks, p.pid)
        _check(k["uid"] == p.uid, "Killed-line UID == ours", checks, p.pid)
        _check(k["prefix"] == "Memory cgroup out of memory", "memcg kill prefix", checks, p.pid)
        victim = {
            "pid": p.pid,
            "comm": comm_text(p.comm),
            "comm_hex": p.comm.hex(),
            "oom_score_adj": adj,
            "uid": p.uid,
            "task_memcg": p.cgroup,
            "total_vm_kb": k["total_vm_kb"],
            "anon_rss_kb": k["anon_rss_kb"],
            "file_rss_kb": k["file_rss_kb"],
            "shmem_rss_kb": k["shmem_rss_kb"],
            "pgtables_kb": k["pgtables_kb"],
        }
        event: dict[str, Any] = {
            "victim": victim,
            "killed_seq": ev.killed_seq,
            "killed_line_prefix": k["prefix"],
            "header": None,
            "reaped": ev.reaped,
        }
        h = ev.header
        if h is not None:
            s = h.get("summary")
            _check(s is not None, "header has an oom-kill: summary line", checks, p.pid)
            assert s is not None
            trig = by_pid.get(h["trigger"]["pid"])
            _check(trig is not None, "trigger pid is one of our processes", checks, p.pid)
            assert trig is not None
            _check(
                trig.role in ("allocator", "storm-child"), "trigger is an allocating process", checks, p.pid
            )
            _check(
                bytes.fromhex(h["trigger"]["comm_hex"]) == trig.comm, "trigger comm == ours", checks, p.pid
            )
            tadj = trig.oom_score_adj if trig.oom_score_adj is not None else 0
            _check(h["trigger"]["oom_score_adj"] == tadj, "trigger oom_score_adj == ours", checks, p.pid)
            _check(h["trigger"]["uid"] == trig.uid, "trigger UID == ours", checks, p.pid)
            _check(s["pid"] == p.pid and s["uid"] == p.uid, "summary pid/uid == victim", checks, p.pid)
            _check(bytes.fromhex(s["task_hex"]) == p.comm, "summary task == victim comm", checks, p.pid)
            _check(s["task_memcg"] == p.cgroup, "task_memcg == victim's cgroup", checks, p.pid)
            want_oom = acct.oom_memcg_of[p.cgroup]
            _check(
                s["oom_memcg"] == want_oom,
                "oom_memcg == the cgroup whose limit we expected to fire",
                checks,
                p.pid,
            )
            _check(h.get("stats_for") == want_oom, "'Memory cgroup stats for' == oom_memcg", checks, p.pid)
            mem = h["counters"].get("memory")
            _check(mem is not None, "memory: usage/limit/failcnt line present", checks, p.pid)
            assert mem is not None
            _check(
                mem["limit"] * 1024 == limits[want_oom], "memory limit kB == the limit we set", checks, p.pid
            )
            _check(any(t["pid"] == p.pid for t in h["tasks"]), "victim listed in task table", checks, p.pid)
            _check(
                any(t["pid"] == trig.pid for t in h["tasks"]), "trigger listed in task table", checks, p.pid
            )
            event["header"] = {
                "first_seq": h["first_seq"],
                "last_seq": h.get("last_seq"),
                "trigger": {
                    "pid": trig.pid,
                    "comm": comm_text(trig.comm),
                    "comm_hex": trig.comm.hex(),
                    "oom_score_adj": tadj,
                    "uid": trig.uid,
                },
                "gfp_mask": h["gfp_mask"],
                "gfp_flags": h["gfp_flags"],
                "order": h["order"],
                "constraint": s["constraint"],
                "oom_memcg": s["oom_memcg"],
                "task_memcg": s["task_memcg"],
                "memcg_usage_kb": mem["usage"],
                "memcg_limit_kb": mem["limit"],
                "memcg_failcnt": mem["failcnt"],
                "counters": h["counters"],
                "tasks": h["tasks"],
            }
        events.append(event)

    killed_acct = acct.killed
    _check(
        len(events) == len(killed_acct), "Killed lines for our pids == processes that died of SIGKILL", checks
    )
    _check(
        sorted(e["victim"]["pid"] for e in events) == sorted(p.pid for p in killed_acct),
        "victim pids == pids that died of SIGKILL",
        checks,
    )
    for pid in acct.expect_reaped:
        _check(
            any(e["victim"]["pid"] == pid and e["reaped"] for e in events), f"pid {pid}: reaper line", checks
        )
    headers = sum(1 for e in events if e["header"] is not None)
    expected = {
        "kills": len(events),
        "kills_accounted": len(killed_acct),
        "headers": headers,
        "kills_without_header": len(events) - headers,
        "reaped": sum(1 for e in events if e["reaped"]),
        "victim_pids": [e["victim"]["pid"] for e in events],
        "suppressed_lines": scan.suppressed,
        "oom_group_kill_lines": scan.group_lines,
        "oom_group_note": (
            "no 'Tasks in ... are going to be killed due to memory.oom.group set' line: cgroup v1 has no "
            "memory.oom.group, so this kernel cannot group-kill here"
        ),
        "foreign_kills_in_window": foreign,
        "events": events,
    }
    return expected, checks


def _tool_versions(rs: Rsyslog) -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.split("\n")[0].strip()
            )
        except OSError:
            return ""

    return {
        "dmesg": first(["dmesg", "--version"]),
        "journalctl": first(["journalctl", "--version"]),
        "rsyslogd": rs.version,
        "python_children": first([DEFAULT_PYTHON, "--version"]),
    }


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


class ForeignInterference(RuntimeError):
    """Another user's OOM kill landed inside the capture window."""


def capture(sc: Scenario, env: Env, out_dir: Path, *, tolerate_foreign: bool = False) -> dict[str, Any]:
    wait = env.last_oom + RATELIMIT_PAUSE - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    token = secrets.token_hex(6)
    # The needles omit the "oomlab: " tag: journald moves it to SYSLOG_IDENTIFIER.
    begin_needle = f"{sc.name} begin {token}"
    end_needle = f"{sc.name} end {token}"
    begin = f"oomlab: {begin_needle}"
    end = f"oomlab: {end_needle}"
    cni = CniSandbox()
    t_start = time.time()
    with KmsgTail() as tail:
        kmsg_write(begin)
        cni.up()
        time.sleep(0.3)
        try:
            acct = sc.run()
        finally:
            env.last_oom = time.monotonic()
        _wait_kills(tail, acct)
        time.sleep(0.2)
        segfault()
        cni.down()
        time.sleep(0.2)
        kmsg_write(end)
        tail.wait_for(lambda r: end.encode() in r.text, timeout=10, settle=0.05)
        lost = tail.lost
        records = tail.records
    idx_b = next(i for i, r in enumerate(records) if begin.encode() in r.text)
    idx_e = next(i for i, r in enumerate(records) if end.encode() in r.text)
    window = records[idx_b : idx_e + 1]
    expected, checks = _expected(acct, window)
    foreign_headers = _foreign_headers(acct, window)
    if (expected["foreign_kills_in_window"] or foreign_headers) and not tolerate_foreign:
        raise ForeignInterference(
            f"foreign kills {expected['foreign_kills_in_window']} / headers {foreign_headers} in window"
        )
    expected["foreign_headers_in_window"] = foreign_headers

    outputs: dict[Fmt, bytes] = {}
    not_captured: dict[str, str] = {}
    fmts = list(FORMATS) + ([DMESG_C] if sc.c_locale_dmesg else [])
    outputs[FORMATS[0]] = b"".join(r.raw for r in window)
    dm_env = {"LANG": "C.UTF-8", "TZ": "UTC"}
    full = {
        ".dmesg": _run(["dmesg"], dm_env),
        ".dmesg-T": _run(["dmesg", "-T"], dm_env),
    }
    if sc.c_locale_dmesg:
        full[".dmesg-Clocale"] = _run(["dmesg"], {"LC_ALL": "C", "TZ": "UTC"})
    if env.journald_ok:
        _journal_has(end_needle.encode())
        since = f"@{int(t_start) - 30}"
        for f in fmts:
            if f.source == "journal":
                mode = f.command.split("-o ")[1]
                full[f.ext] = journalctl("-k", "-o", mode, "--since", since)
    if env.rsyslog.proc is not None:
        env.rsyslog.wait_for(end_needle.encode())
        for ext in Rsyslog.FILES:
            full[ext] = env.rsyslog.path(ext).read_bytes()
    for f in fmts[1:]:
        if f.ext in full:
            try:
                outputs[f] = _cut(full[f.ext], begin_needle.encode(), end_needle.encode())
            except ValueError as exc:
                not_captured[f.ext] = f"could not cut: {exc}"
        elif f.source == "journal":
            not_captured[f.ext] = env.journald_reason
        elif f.source == "rsyslog":
            not_captured[f.ext] = env.rsyslog.reason or "rsyslog not running"

    files: dict[str, Any] = {}
    for f, data in outputs.items():
        name = sc.name + f.ext
        (out_dir / name).write_bytes(data)
        files[name] = {
            "format": f.format,
            "command": f.command,
            "bytes": len(data),
            "lines": data.count(b"\n"),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    files[sc.name + ".kmsg"]["records"] = len(window)
    meta: dict[str, Any] = {
        "schema": "oomlab-real-capture/1",
        "name": sc.name,
        "title": sc.title,
        "captured_at_utc": datetime.fromtimestamp(t_start, UTC).isoformat(timespec="seconds"),
        "generator": f"python -m tests.oomlab.capture {sc.name}",
        "environment": {
            "kernel_release": platform.release(),
            "kernel_version": platform.version(),
            "machine": platform.machine(),
            "hostname": platform.node(),
            "boot_id": _boot_id(),
            "timezone": "UTC",
            "locale": "C.UTF-8",
            "cgroup": "v1 memory controller at /sys/fs/cgroup/memory, memory.use_hierarchy=1, no swap",
            "cap_sys_resource": False,
            "tools": _tool_versions(env.rsyslog),
        },
        "setup": {
            "cgroup_driver": acct.cgroup_driver,
            "path_shape": acct.path_shape,
            "cgroups": acct.cgroups,
            "processes": [p.to_json() for p in acct.procs],
            "commands": acct.commands,
            "notes": acct.notes,
            **acct.extra,
        },
        "window": {
            "first_seq": window[0].seq,
            "last_seq": window[-1].seq,
            "records": len(window),
            "begin_marker": begin,
            "end_marker": end,
            "how_cut": (
                "every file runs from the line holding begin_marker to the line holding end_marker "
                "(user-space records written to /dev/kmsg with facility user); nothing in between was "
                "edited or removed"
            ),
            "context_before": [_ctx(r) for r in window[: _first_report(window)]],
            "context_after": [_ctx(r) for r in window[_last_report(window) + 1 :]],
            "kmsg_epipe_events": lost,
        },
        "files": files,
        "not_captured": not_captured,
        "checks": checks,
        "expected": expected,
    }
    (out_dir / f"{sc.name}.meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def _foreign_headers(acct: Acct, window: list[KmsgRecord]) -> list[dict[str, Any]]:
    ours = {p.pid for p in acct.procs}
    out: list[dict[str, Any]] = []
    for ev in scan_records(window).kills:
        h = ev.header
        if h is not None and h["trigger"].get("pid") not in ours:
            out.append({"trigger_pid": h["trigger"].get("pid"), "seq": h["first_seq"]})
    return out


def _ctx(r: KmsgRecord) -> str:
    return f"{r.prio},{r.seq}: " + r.text.decode("utf-8", "backslashreplace")


def _first_report(window: list[KmsgRecord]) -> int:
    return next(i for i, r in enumerate(window) if b" invoked oom-killer: " in r.text)


def _last_report(window: list[KmsgRecord]) -> int:
    marks = (b"Killed process ", b"oom_reaper: reaped process ")
    return max(i for i, r in enumerate(window) if r.facility == 0 and any(m in r.text for m in marks))


def write_readme(out_dir: Path) -> None:
    rows: list[str] = []
    base = {f.ext for f in FORMATS}
    for meta_path in sorted(out_dir.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        exp = meta["expected"]
        exts = {f.removeprefix(meta["name"]) for f in meta["files"]}
        fmts = "all 12" if base <= exts else ", ".join(sorted(exts & base))
        if extra := sorted(exts - base):
            fmts += " + " + ", ".join(f"`{e}`" for e in extra)
        if meta["not_captured"]:
            fmts += " (missing: " + ", ".join(sorted(meta["not_captured"])) + ")"
        rows.append(
            f"| `{meta['name']}` | {meta['title']} | {exp['kills']} | {exp['headers']} | {exp['reaped']} "
            f"| {meta['window']['records']} | {fmts} |"
        )
    text = README_HEAD + "\n".join(rows) + "\n" + README_TAIL
    (out_dir / "README.md").write_text(text)


README_HEAD = """# Real OOM-killer captures

Genuine kernel output, produced on a VM by `python -m tests.oomlab.capture` (root, cgroup v1
memory controller). Every scenario is one `<name>.meta.json` plus the same stretch of kernel log in
several formats: `<name>.kmsg`, `.dmesg`, `.dmesg-T`, `.journal.json`, `.journal-short*.txt`,
`.syslog3164`, `.syslog5424`, `.kern-log`, `.kern-log-rfc3339` (and `.dmesg-Clocale` where comms are
not ASCII). The `.meta.json` says how the capture was made (kernel, cgroup layout, limits, comms,
oom_score_adj, uids, commands, per-file format and command) and lists the `expected` facts, each
cross-checked against the generator's own process accounting (`checks`).

Every file is cut from the user-space marker record `oomlab: <name> begin <token>` to
`oomlab: <name> end <token>`; between them: a CNI-style bridge/veth set-up in a private netns
(genuine `cni0: port 1(veth...) entered ... state` kernel lines), the OOM report(s), a segfault
line pair and the veth teardown. Nothing inside a cut is edited. Other users of the machine were
active at the same time; their records, if any fell inside a window, are left in place and listed
in `expected.foreign_kills_in_window`.

| name | scenario | kills | headers | reaped | kmsg records | formats |
|---|---|---|---|---|---|---|
"""

README_TAIL = r"""
"kills" counts `Killed process` lines (= processes our accounting saw die of SIGKILL), "headers"
the `invoked oom-killer` ... `oom-kill:` dumps before them; the difference are kills whose header
the kernel's rate limit suppressed.

## Formats

| suffix | producer |
|---|---|
| `.kmsg` | raw records read from `/dev/kmsg`: `prio,seq,usec,flags;message` (bytes < 0x20, >= 0x7f and `\` escaped as `\xNN`) |
| `.dmesg` | `dmesg` (util-linux 2.38.1, `LANG=C.UTF-8`) |
| `.dmesg-Clocale` | `LC_ALL=C dmesg` (non-ASCII bytes printed as `\xNN`) |
| `.dmesg-T` | `dmesg -T` (`TZ=UTC`) |
| `.journal.json` | `journalctl -k -o json` (systemd 252, private journald reading `/dev/kmsg`) |
| `.journal-short*.txt` | `journalctl -k -o short`, `short-iso`, `short-precise`, `short-monotonic` |
| `.syslog3164` | rsyslogd 8.2302 imklog, `RSYSLOG_TraditionalForwardFormat` + LF: `<PRI>Mmm dd hh:mm:ss host tag: msg` |
| `.syslog5424` | rsyslogd imklog, `RSYSLOG_SyslogProtocol23Format`: `<PRI>1 RFC3339 host app - - - msg` |
| `.kern-log` | rsyslogd imklog, `RSYSLOG_TraditionalFileFormat` (Ubuntu `/var/log/kern.log`) |
| `.kern-log-rfc3339` | rsyslogd imklog, `RSYSLOG_FileFormat` (Debian 12 default) |

## Line shapes seen in these captures (kernel 6.18, cgroup v1)

```
kmsg        4,3678,1947672844,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=968
dmesg       [ 1947.180956] oomlab: s01-cgroupfs-burstable begin 6620a9ca0579
dmesg -T    [Fri Nov 27 18:40:18 2026] cni0: port 1(veth56306d83) entered blocking state
short       Nov 27 18:40:18 vm kernel: cni0: port 1(veth56306d83) entered blocking state
short-iso   2026-11-27T18:40:18+0000 vm kernel: ...            (offset without colon)
short-prec. Nov 27 18:40:18.724914 vm kernel: ...
short-mono. [ 1947.238336] vm kernel: ...                       (= kmsg usec, _SOURCE_MONOTONIC_TIMESTAMP)
rfc3164     <6>Nov 27 18:40:18 vm kernel: [ 1947.238336] cni0: ...   (imklog keeps the kernel stamp)
rfc5424     <6>1 2026-11-27T18:40:18.725058+00:00 vm kernel - - - [ 1947.238336] cni0: ...
kern.log    Nov 27 18:40:18 vm kernel: [ 1947.238336] cni0: ...
```

* Report levels: `invoked oom-killer`, `CPU:`, stack and registers are level 4; `memory:`,
  `memory+swap:`, `kmem:`, `Memory cgroup stats for`, the v1 stat lines (`cache 0`, `rss 66859008`,
  ... `total_unevictable 0`, byte values, one record each), `Tasks state`, the task rows and
  `oom-kill:` are level 6; `Memory cgroup out of memory: Killed process` is level 3; `oom_reaper:`
  is 6; `oom_kill_process: N callbacks suppressed` is 4.
* `CPU: 1 UID: 65534 PID: 30724 Comm: python3 Not tainted 6.18.44-fc-v595 #1 PREEMPT(none) ` ends
  with a space. The task table has `rss_anon rss_file rss_shmem` columns.
* kmsg flags are always `-` (no `c` fragments), there is no `caller=` field and no ` KEY=value`
  dictionary continuation line in any window.
* Storm: the first 10 kills within 5 s get a header, the rest only the `Killed process` line; the
  `oom_kill_process: 50 callbacks suppressed` line is printed only when the *next* OOM after the
  5 s interval happens, right before its header - not at the end of the burst.
* User-space records written to `/dev/kmsg` (the `oomlab:` markers, priority 14 = user.info) show
  up in journald with `SYSLOG_IDENTIFIER=oomlab` and the tag removed from `MESSAGE`
  (`vm oomlab: ...` in the short formats), but rsyslog's imklog tags them `kernel:` with `<14>`.
* journalctl's short formats show journald's *receive* time; dmesg -T computes wall time from the
  monotonic stamp; they can differ.
* Odd comms (`s06*`): journalctl short formats replace TAB with 8 spaces, rsyslog and dmesg keep it;
  an LF inside comm stays one record in kmsg/journald (`\x0a`, JSON `\n`; dmesg and journalctl
  print a continuation line indented to the message column) but becomes two separate syslog lines
  with the same kernel stamp in the rsyslog files; invalid UTF-8 (comm cut mid-character) makes
  journalctl -o json emit `MESSAGE` as an array of byte values and the short formats print
  `[88B blob data]`; dmesg in a UTF-8 locale prints valid characters raw and the stray byte as
  `\xc3`; rsyslog writes the raw bytes.

## Known gaps

* No negative `oom_score_adj` anywhere: root on the capture VM lacks `CAP_SYS_RESOURCE`, so
  `-997` (Kubernetes Guaranteed) could not be set; those scenarios run with 0.
* No `Tasks in ... are going to be killed due to memory.oom.group set` lines: cgroup v1 has no
  `memory.oom.group`.
* No `/dev/kmsg` dictionary continuation lines: none of the records in the windows carries device
  info.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--no-rsyslog", action="store_true")
    ap.add_argument("--attempts", type=int, default=6, help="retries when foreign OOM kills hit the window")
    args = ap.parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name:28} {sc.title}")
        return 0
    chosen = [sc for sc in SCENARIOS if not args.scenarios or sc.name in args.scenarios]
    unknown = set(args.scenarios) - {sc.name for sc in SCENARIOS}
    if unknown:
        ap.error(f"unknown scenarios: {sorted(unknown)}")
    ok, why = can_cause_oom()
    if not ok:
        print(f"cannot stage OOM kills: {why}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    js = start_journald()
    rs = Rsyslog()
    if args.no_rsyslog:
        rs.reason = "disabled with --no-rsyslog"
    else:
        rs.start()
    env = Env(rsyslog=rs, journald_reason=js.reason, journald_ok=js.ok)
    failures = 0
    try:
        for sc in chosen:
            print(f"== {sc.name}: {sc.title}", flush=True)
            meta = None
            for attempt in range(1, args.attempts + 1):
                try:
                    meta = capture(sc, env, args.out, tolerate_foreign=attempt == args.attempts)
                    break
                except ForeignInterference as exc:
                    print(f"   attempt {attempt}: {exc}; retrying", flush=True)
                    time.sleep(3)
                except Exception as exc:
                    print(f"   FAILED: {exc!r}", flush=True)
                    break
            if meta is None:
                failures += 1
                continue
            exp = meta["expected"]
            print(
                f"   kills={exp['kills']} headers={exp['headers']} reaped={exp['reaped']} "
                f"files={len(meta['files'])} not_captured={sorted(meta['not_captured'])}",
                flush=True,
            )
    finally:
        rs.stop()
        if js.started_by_us:
            stop_journald()
    write_readme(args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
