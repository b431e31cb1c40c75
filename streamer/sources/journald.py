"""journald source: kernel records through ``journalctl -o json``, resumable by cursor.

``journalctl`` runs as an asyncio subprocess; each output line is one JSON entry framed with
``Framer.frame_journal_entry``. Positions are ``SourcePosition(kind="journald", cursor=...)``;
resuming with ``after_cursor`` never repeats the entry the cursor names.

Which entries: ``_TRANSPORT=kernel`` (what ``-k`` matches) of the current boot (``-b``) when
starting fresh, but across all boots when resuming from a cursor: ``-k``/``-b`` would silently
skip the rest of the cursor's boot after a reboot, and the records just before a reboot are
often the OOM storm that caused it. With ``directory``/``file`` (backfill of journals copied from
elsewhere) all boots are read too; ``all_boots`` forces that everywhere. journald's own "Missed N
kernel messages" notices (kmsg records overwritten before journald read them) are matched as
well and counted as ``lost``/``gaps``, never yielded.

Trust: only ``_TRANSPORT=kernel`` entries are framed (the Framer drops and counts the rest), and
among those, entries with a ``SYSLOG_FACILITY`` other than 0 were written to ``/dev/kmsg`` by
user space (journald gives them the kernel transport too): they are yielded with
``trusted=False`` and counted as ``untrusted``.

Follow mode restarts ``journalctl`` with a bounded exponential backoff when it exits, after the
last cursor read (``restarts`` in ``counts``). Backfill mode (``follow=False``) ends with the
subprocess; a non-zero exit raises SourceError carrying journalctl's stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from parsers.framing import Framer
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry
from streamer.config import OptionError, option_help
from streamer.registry import BuildContext, Component
from streamer.sources.base import SOURCE_TELEMETRY, FramedSource, SourceError

JOURNALD_TELEMETRY = SOURCE_TELEMETRY + Telemetry(
    "journald",
    (
        Count("runs", "journalctl processes started"),
        Count("bad_json", "journalctl output lines that are not JSON objects"),
        Count("skipped", "entries not framed into a record"),
        Count("skipped_{}", "entries not framed, by the framer's reason (a copy of its tally)"),
        Count(
            "long_lines_dropped",
            "journal entries longer than journalctl's line limit",
            bound="journald_long_lines",
        ),
    ),
)

log = logging.getLogger("oomstream.sources.journald")

# One JSON entry per line; kernel messages are at most a few KiB, but a MESSAGE printed as a
# byte array costs ~4 characters per byte, and the limit is only a ceiling, never preallocated.
LINE_LIMIT = 16 << 20
STDERR_KEEP = 64 << 10
HEALTHY_SECONDS = 30.0  # a journalctl that ran this long resets the restart backoff
# SD_MESSAGE_JOURNAL_MISSED: journald-kmsg.c logs "Missed %lu kernel messages" with this id.
MISSED_MESSAGE_ID = "e9bf28e6e834481bb6f48f548ad13606"
_MISSED = re.compile(r"Missed (\d+) kernel messages")


def resolve_journalctl(journalctl: str) -> str:
    """Absolute path of the journalctl binary, or SourceError saying where it was looked for."""
    if os.sep in journalctl:
        if os.access(journalctl, os.X_OK):
            return journalctl
        raise SourceError(f"journalctl not executable at {journalctl!r}")
    found = shutil.which(journalctl)
    if found is None:
        raise SourceError(
            f"{journalctl!r} not found in PATH ({os.environ.get('PATH', '')}); install systemd's "
            "journalctl in the image or configure the kmsg or file source instead"
        )
    return found


class JournaldSource(FramedSource):
    """Kernel records from the systemd journal.

    ``after_cursor``: resume after this entry (a checkpoint's ``cursor``); ``since``: journalctl
    ``--since`` for a fresh start (ignored when a cursor is given: journalctl accepts only one).
    ``directory``/``file``: read those journal files instead of the local journal.
    """

    def __init__(
        self,
        *,
        after_cursor: str | None = None,
        directory: str | None = None,
        file: str | None = None,
        since: str | None = None,
        follow: bool = True,
        journalctl: str = "journalctl",
        all_boots: bool = False,
        restart_initial_seconds: float = 0.5,
        restart_max_seconds: float = 30.0,
        extra_args: Sequence[str] = (),
        name: str = "journald",
    ) -> None:
        if directory is not None and file is not None:
            raise ValueError("give either directory or file, not both")
        self.name = name
        self.checkpoint_key = name
        self.counts: Tally = JOURNALD_TELEMETRY.tally()
        self.follow = follow
        self._journalctl = journalctl
        self._after_cursor = after_cursor
        self._directory = directory
        self._file = file
        self._since = since
        self._all_boots = all_boots or directory is not None or file is not None
        self._restart_initial = restart_initial_seconds
        self._restart_max = restart_max_seconds
        self._extra_args = tuple(extra_args)
        self._framer = Framer("journal-json", source_kind="journald")
        self._proc: asyncio.subprocess.Process | None = None
        self._closed = False
        self._closed_event = asyncio.Event()
        self.last_cursor: str | None = after_cursor  # last entry read from journalctl
        self.last_stderr = ""

    def start_position(self) -> SourcePosition | None:
        if self._after_cursor is None:
            return None
        return SourcePosition(kind="journald", cursor=self._after_cursor)

    def checkpoint_data(self, position: SourcePosition) -> dict[str, Any]:
        """What to save so that reading resumes after ``position``: its journal cursor."""
        return {"kind": "journald", "cursor": position.cursor}

    @staticmethod
    def resume_cursor(data: dict[str, Any] | None) -> str | None:
        """The cursor of a saved checkpoint; None without one."""
        if not data or data.get("kind", "journald") != "journald":
            return None
        cursor = data.get("cursor")
        return cursor if isinstance(cursor, str) and cursor else None

    async def aclose(self) -> None:
        self._closed = True
        self._closed_event.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    def argv(self, exe: str, cursor: str | None) -> list[str]:
        """The journalctl command line for a run resuming after ``cursor`` (None: fresh start)."""
        args = [exe, "-o", "json", "--no-pager"]
        if cursor is None and not self._all_boots:
            args.append("-b")
        # Matches on different fields are ORed only with "+" (and -b ANDs with both sides).
        args += ["_TRANSPORT=kernel", "+", f"MESSAGE_ID={MISSED_MESSAGE_ID}"]
        if self._directory is not None:
            args.append(f"--directory={self._directory}")
        if self._file is not None:
            args.append(f"--file={self._file}")
        if cursor is not None:
            args.append(f"--after-cursor={cursor}")
        elif self._since is not None:
            args.append(f"--since={self._since}")
        if self.follow:
            # --follow alone implies --lines=10, even after a cursor: a restart would read only
            # the last ten entries of its backlog and skip the rest (kill reports among them).
            args += ["--follow", "--no-tail"]
        args.extend(self._extra_args)
        return args

    async def records(self) -> AsyncIterator[KernelRecord]:
        exe = resolve_journalctl(self._journalctl)
        backoff = self._restart_initial
        while not self._closed:
            started = time.monotonic()
            # aclosing: if our consumer stops early, journalctl is reaped now, not at GC time.
            async with contextlib.aclosing(self._run_once(exe)) as run:
                async for record in run:
                    yield record
            proc = self._proc
            rc = proc.returncode if proc is not None else None
            if self._closed:
                return
            if not self.follow:
                if rc:
                    raise SourceError(
                        f"journalctl exited with status {rc}: {self.last_stderr.strip() or '(no stderr)'}"
                    )
                return
            if time.monotonic() - started >= HEALTHY_SECONDS:
                backoff = self._restart_initial
            self.counts["restarts"] += 1
            log.warning(
                "%s: journalctl exited with status %s%s; restarting in %.1f s after cursor %s",
                self.name, rc, f" ({self.last_stderr.strip()[-500:]})" if self.last_stderr.strip() else "",
                backoff, self.last_cursor,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed_event.wait(), backoff)
            backoff = min(backoff * 2, self._restart_max)

    async def _run_once(self, exe: str) -> AsyncGenerator[KernelRecord, None]:
        argv = self.argv(exe, self.last_cursor)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            raise SourceError(f"cannot run {argv[0]}: {exc}") from exc
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(_collect(proc.stderr))
        self.counts["runs"] += 1
        eof = False
        try:
            while not self._closed:
                try:
                    line = await proc.stdout.readline()
                except ValueError:
                    # Longer than LINE_LIMIT: readline dropped it; the next read resynchronises.
                    self.counts["long_lines_dropped"] += 1
                    continue
                if not line:
                    eof = True
                    break
                record = self._frame_line(line)
                if record is not None:
                    yield record
        finally:
            await _reap(proc, exiting=eof)
            self.last_stderr = await stderr_task

    def _missed(self, entry: dict[str, object]) -> None:
        count = _missed_count(entry)
        self.counts["gaps"] += 1
        self.counts["lost"] += count or 0
        log.warning(
            "%s: journald missed %s kernel messages (overwritten in the kmsg ring before it read them)",
            self.name, count if count is not None else "an unknown number of",
        )  # fmt: skip

    def _frame_line(self, line: bytes) -> KernelRecord | None:
        self.counts["lines"] += 1
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                self.counts["bad_json"] += 1
            return None
        if not isinstance(entry, dict):
            self.counts["bad_json"] += 1
            return None
        cursor = entry.get("__CURSOR")
        if isinstance(cursor, str):
            self.last_cursor = cursor
        if entry.get("MESSAGE_ID") == MISSED_MESSAGE_ID:
            self._missed(entry)
            return None
        record = self._framer.frame_journal_entry(entry, SourcePosition(kind="journald"))
        if record is None:
            self.counts["skipped"] += 1
            for reason, value in self._framer.skipped.items():
                self.counts[f"skipped_{reason}"] = value
            return None
        if not record.trusted:
            # The Framer marks what user space wrote to /dev/kmsg (journald still says
            # _TRANSPORT=kernel, only SYSLOG_FACILITY tells); counted here for the metrics.
            self.counts["untrusted"] += 1
        self.counts["records"] += 1
        return record


async def _reap(proc: asyncio.subprocess.Process, *, exiting: bool) -> None:
    """Wait for journalctl to end, terminating it unless it closed its output (is exiting).

    Signalling a process that already exited is not harmless here: Popen.send_signal() polls
    first, reaping the child before asyncio's child watcher does, which then reports status 255.
    """
    if exiting:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _missed_count(entry: dict[str, object]) -> int | None:
    message = entry.get("MESSAGE")
    match = _MISSED.search(message) if isinstance(message, str) else None
    return int(match.group(1)) if match is not None else None


async def _collect(stream: asyncio.StreamReader) -> str:
    """Drain stderr (so journalctl never blocks on a full pipe), keeping the last 64 KiB."""
    kept: deque[bytes] = deque()
    size = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        kept.append(chunk)
        size += len(chunk)
        while size > STDERR_KEEP and len(kept) > 1:
            size -= len(kept.popleft())
    return b"".join(kept).decode("utf-8", "replace")


# -- the component: [sources.journald] -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournaldOptions:
    directory: str | None = field(
        default=None, metadata=option_help("journal directory to read; unset: the system journal")
    )
    since: str | None = field(
        default=None,
        metadata=option_help(
            "with no checkpoint, start at this time (journalctl --since syntax); unset: current boot"
        ),
    )

    def __post_init__(self) -> None:
        if self.since is not None and not self.since.strip():
            raise OptionError("since", "must not be empty (leave it unset for the current boot)")


def journald_source(
    options: JournaldOptions, checkpoint: dict[str, Any] | None, *, journalctl: str = "journalctl"
) -> JournaldSource:
    """The journald source of ``options``, after the checkpoint's cursor when there is one
    (the one place a JournaldSource is made from configuration: ``auto`` delegates here too)."""
    cursor = JournaldSource.resume_cursor(checkpoint)
    return JournaldSource(
        after_cursor=cursor,
        directory=options.directory,
        journalctl=journalctl,
        since=None if cursor else options.since,
    )


async def build(options: JournaldOptions, context: BuildContext) -> list[JournaldSource]:
    return [journald_source(options, context.checkpoints.load("journald"))]


COMPONENT = Component(
    options=JournaldOptions, build=build, help="the kernel entries of the systemd journal (journalctl)"
)
