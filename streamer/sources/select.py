"""``sources.auto``: pick the kernel log source for this node: /dev/kmsg if readable, else
journald, else explain. It probes and then delegates to the kmsg or journald component, which
builds the source from its own options and checkpoint.

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
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.registry import BuildContext, Component
from streamer.sources.base import Source, SourceError
from streamer.sources.files import FilesOptions, file_sources
from streamer.sources.journald import JournaldOptions, JournaldSource, journald_source, resolve_journalctl
from streamer.sources.kmsg import KmsgOptions, KmsgSource, kmsg_source

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
    kmsg: KmsgOptions | None = None,
    journald: JournaldOptions | None = None,
    kmsg_checkpoint: dict[str, Any] | None = None,
    journald_checkpoint: dict[str, Any] | None = None,
    journalctl: str = "journalctl",
    host: str | None = None,
) -> KmsgSource | JournaldSource:
    """The source to follow on this machine, made by the kmsg or journald component from its own
    options and its own checkpoint (``*_checkpoint``: the saved data under "kmsg", "journald").

    Order: the kind of an existing checkpoint if it still works, then kmsg, then journald.
    Raises SourceError naming everything tried and how to configure a source explicitly.
    """
    kmsg = kmsg or KmsgOptions()
    journald = journald or JournaldOptions()
    kmsg_problem = probe_kmsg(kmsg.path)
    journald_problem: str | None = None
    want = "kmsg" if kmsg_checkpoint else "journald" if journald_checkpoint else None
    if want == "journald" or kmsg_problem is not None:
        journald_problem = await probe_journald(journalctl, directory=journald.directory)
        if journald_problem is None:
            if kmsg_problem is not None:
                log.info("using journald: %s", kmsg_problem)
            return journald_source(journald, journald_checkpoint, journalctl=journalctl)
    if kmsg_problem is None:
        if want is not None and want != "kmsg":
            log.warning(
                "checkpoint is for %s, which is not usable (%s); reading /dev/kmsg from its oldest record",
                want, journald_problem,
            )  # fmt: skip
        return kmsg_source(kmsg, kmsg_checkpoint, host=host)
    raise SourceError(
        "no kernel log source is usable. Tried: "
        f"(1) kmsg: {kmsg_problem}; (2) journald: {journald_problem}. "
        "Give the container /dev/kmsg (root or CAP_SYSLOG, /dev/kmsg mounted), or journalctl with "
        "the host journal mounted, or configure a source explicitly (kmsg path, a journal "
        "directory, or a kernel log file such as /var/log/kern.log)."
    )


# -- the component: [sources.auto] ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutoOptions:
    """No options of its own: it uses those of [sources.files], [sources.kmsg], [sources.journald]."""


async def build(options: AutoOptions, context: BuildContext) -> list[Source]:
    """The files of sources.files.paths if any are set, else kmsg, else journald (probed)."""
    files = context.options("sources.files", FilesOptions)
    if files.paths:
        return list(file_sources(files, context))
    chosen = await auto_select(
        kmsg=context.options("sources.kmsg", KmsgOptions),
        journald=context.options("sources.journald", JournaldOptions),
        kmsg_checkpoint=context.checkpoints.load("kmsg"),
        journald_checkpoint=context.checkpoints.load("journald"),
        host=context.node_name,
    )
    return [chosen]


COMPONENT = Component(
    options=AutoOptions, build=build, help="files if sources.files.paths is set, else kmsg, else journald"
)
