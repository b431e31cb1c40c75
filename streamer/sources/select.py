"""Pick the kernel log source for this node: /dev/kmsg if readable, else journald, else explain.

A checkpoint from an earlier run wins when its source still works: switching from journald to
kmsg (or back) would replay or skip records, since their positions do not translate.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat

import orjson

from parsers.records import SourcePosition
from streamer.sources.base import SourceError
from streamer.sources.journald import JournaldSource, resolve_journalctl
from streamer.sources.kmsg import KmsgSource

log = logging.getLogger("oomstream.sources.select")


def probe_kmsg(path: str = "/dev/kmsg") -> str | None:
    """None if ``path`` can be opened and read like /dev/kmsg; else why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            return f"{path}: not a character device"
        # Open can succeed where read fails; at the end, a working device says EAGAIN.
        os.lseek(fd, 0, os.SEEK_END)
        try:
            os.read(fd, 16384)
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                return f"{path}: read failed: {exc.strerror or exc}"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    return None


async def probe_journald(
    journalctl: str = "journalctl", *, directory: str | None = None, timeout: float = 10.0
) -> str | None:
    """None if ``journalctl -k`` runs and shows at least one kernel entry; else why not."""
    try:
        exe = resolve_journalctl(journalctl)
    except SourceError as exc:
        return str(exc)
    argv = [exe, "-o", "json", "--no-pager", "-n", "1", "_TRANSPORT=kernel"]
    argv += ["-b"] if directory is None else [f"--directory={directory}"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return f"cannot run {exe}: {exc}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return f"{' '.join(argv)} did not answer within {timeout:.0f} s"
    if proc.returncode != 0:
        return f"{' '.join(argv)} failed ({proc.returncode}): {err.decode(errors='replace').strip()}"
    for line in out.splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            if isinstance(orjson.loads(line), dict):
                return None
    return (
        f"{' '.join(argv)} shows no kernel entries (no journal files? mount the host's "
        "/var/log/journal and /run/log/journal)"
    )


async def auto_select(
    *,
    checkpoint: SourcePosition | None = None,
    checkpoint_boot_id: str | None = None,
    kmsg_path: str = "/dev/kmsg",
    journalctl: str = "journalctl",
    journal_directory: str | None = None,
    journal_since: str | None = None,
    kmsg_start: str = "checkpoint",
    host: str | None = None,
) -> KmsgSource | JournaldSource:
    """The source to follow on this machine, resuming from ``checkpoint`` when it fits.

    Order: the checkpoint's own kind if it still works, then kmsg, then journald. Raises
    SourceError naming everything tried and how to configure a source explicitly.
    ``kmsg_start`` and ``journal_since`` mean what they mean for an explicit source.
    """
    kmsg_problem = probe_kmsg(kmsg_path)
    journald_problem: str | None = None
    want = checkpoint.kind if checkpoint is not None else None

    def kmsg() -> KmsgSource:
        if kmsg_start == "checkpoint" and checkpoint is not None and checkpoint.kind == "kmsg":
            return KmsgSource(kmsg_path, start=checkpoint, checkpoint_boot_id=checkpoint_boot_id, host=host)
        return KmsgSource(kmsg_path, start="end" if kmsg_start == "end" else "oldest", host=host)

    def journald() -> JournaldSource:
        cursor = checkpoint.cursor if checkpoint is not None and checkpoint.kind == "journald" else None
        return JournaldSource(
            after_cursor=cursor,
            directory=journal_directory,
            journalctl=journalctl,
            since=None if cursor else journal_since,
        )

    if want == "journald" or kmsg_problem is not None:
        journald_problem = await probe_journald(journalctl, directory=journal_directory)
        if journald_problem is None:
            if kmsg_problem is not None:
                log.info("using journald: %s", kmsg_problem)
            return journald()
    if kmsg_problem is None:
        if want is not None and want != "kmsg":
            log.warning(
                "checkpoint is for %s, which is not usable (%s); reading /dev/kmsg from its oldest record",
                want, journald_problem,
            )  # fmt: skip
        return kmsg()
    raise SourceError(
        "no kernel log source is usable. Tried: "
        f"(1) kmsg: {kmsg_problem}; (2) journald: {journald_problem}. "
        "Give the container /dev/kmsg (root or CAP_SYSLOG, /dev/kmsg mounted), or journalctl with "
        "the host journal mounted, or configure a source explicitly (kmsg path, a journal "
        "directory, or a kernel log file such as /var/log/kern.log)."
    )
