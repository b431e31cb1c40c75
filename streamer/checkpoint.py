"""Checkpoint files: where each source may resume reading, written so a crash never corrupts one.

One small JSON file per source in the state directory. A save replaces the file atomically (temp
file in the same directory, write, flush, fsync, rename, fsync the directory), so a reader sees the
old checkpoint or the new one, never a mixture: at worst a crash repeats the events of the last
interval, which consumers drop by ``event_id``; it never skips any.

A file that cannot be read back (truncated by a disk fault, edited by hand, written by a future
version) is logged, counted and moved aside as ``<name>.corrupt``; the source then starts from its
configured default. Refusing to start would stop OOM reporting on that node for good, which is
worse than a replay.

Only one process may own a state directory: two daemons on one node (a DaemonSet rollout with
surge, a forgotten manual run) would overwrite each other's positions. ``CheckpointStore`` takes an
exclusive ``flock`` on ``.checkpoint.lock`` and fails fast with a clear message otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import time
import zlib
from typing import Any, Self

import orjson

from parsers.telemetry import Count, Tally, Telemetry

CHECKPOINT_TELEMETRY = Telemetry(
    "checkpoints",
    (
        Count("saves", "Checkpoint files written", metric="oomstream_checkpoint_saves"),
        Count(
            "corrupt",
            "Checkpoint files unreadable at load (treated as absent)",
            metric="oomstream_checkpoint_corrupt",
        ),
        Count(
            "save_errors",
            "Checkpoint saves that failed (disk full, I/O error); the previous checkpoint stays",
            metric="oomstream_checkpoint_save_errors",
        ),
        Count("loads", "checkpoints loaded"),
        Count("missing", "checkpoints asked for and absent"),
        Count("temp_removed", "leftover temporary files removed"),
    ),
)

log = logging.getLogger("oomstream.checkpoint")

CHECKPOINT_VERSION = 1
SUFFIX = ".checkpoint.json"
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".checkpoint.lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_READABLE_CHARS = 60  # readable part of a file name; the hash keeps names unique and short


class CheckpointError(Exception):
    """The state directory is unusable (not writable, locked by another process)."""


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``directory/name``, released on close or process exit."""

    def __init__(self, directory: str, name: str, what: str) -> None:
        self.path = os.path.join(directory, name)
        self._what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                holder = _read_small(self.path).strip() or "unknown"
                raise CheckpointError(
                    f"{self._what} {os.path.dirname(self.path)!r} is in use by another oomstream process "
                    f"({holder}); only one may run per directory"
                ) from None
            raise
        # Who holds it, for the message the next contender prints; advisory only, so a full disk
        # (the lock file exists, the note does not fit) must not stop the service from starting.
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
        except OSError as error:
            log.warning("cannot note the owner in %s (%s); the lock holds anyway", self.path, error.strerror)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_small(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(200)
    except OSError:
        return ""


def fsync_directory(directory: str) -> None:
    """Make a rename/create/unlink in ``directory`` durable (the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix.

    ``durable=False`` skips both fsyncs: the replacement still survives a process crash (the page
    cache outlives the process) but not a power loss; for state that may safely go back in time.
    """
    directory = os.path.dirname(path) or "."
    # Unique per writer, so a concurrent writer or a leftover from a crash never collides with us.
    temp = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{time.monotonic_ns()}{TEMP_SUFFIX}"
    )
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.close(fd)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        fsync_directory(directory)


def checkpoint_file_name(source_name: str) -> str:
    """A file name for any source name: readable prefix, plus a hash that keeps it unique.

    Source names hold paths ("file:/var/log/kern.log"), so they are escaped rather than used as is;
    the hash distinguishes names that escape alike ("a/b" and "a:b").
    """
    readable = _UNSAFE.sub("_", source_name).strip("._")[:_READABLE_CHARS] or "source"
    digest = hashlib.blake2b(source_name.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return f"{readable}-{digest}{SUFFIX}"


def _checksum(data: dict[str, Any]) -> int:
    return zlib.crc32(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


class CheckpointStore:
    """Per-source checkpoints in one directory (created 0700 if missing).

    ``counts`` tallies ``saves``, ``save_errors``, ``loads``, ``missing``, ``corrupt``,
    ``temp_removed`` for metrics.
    """

    def __init__(self, directory: str, *, lock: bool = True, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        self.counts: Tally = CHECKPOINT_TELEMETRY.tally()
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as error:
            raise CheckpointError(
                f"state directory {directory!r}: cannot create ({error.strerror or error})"
            ) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise CheckpointError(f"state directory {directory!r}: not writable by uid {os.getuid()}")
        self._lock: DirectoryLock | None = None
        if lock:
            self._lock = DirectoryLock(directory, LOCK_NAME, "state directory")
            self._lock.acquire()
        self._remove_stale_temp_files()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path_for(self, source_name: str) -> str:
        return os.path.join(self.directory, checkpoint_file_name(source_name))

    def load(self, source_name: str) -> dict[str, Any] | None:
        """The last saved data for ``source_name``; None when absent or unreadable (never raises)."""
        path = self.path_for(source_name)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            self.counts["missing"] += 1
            return None
        except OSError as error:
            # Unreadable is treated like corrupt: starting from the default beats not starting.
            self._corrupt(path, source_name, f"cannot read: {error.strerror or error}", move=False)
            return None
        problem, data = self._decode(raw, source_name)
        if problem is not None:
            self._corrupt(path, source_name, problem, move=True)
            return None
        self.counts["loads"] += 1
        return data

    def save(self, source_name: str, data: dict[str, Any]) -> None:
        """Atomically replace the checkpoint of ``source_name``. Raises OSError/TypeError on failure."""
        envelope = {
            "version": CHECKPOINT_VERSION,
            "source": source_name,
            "saved_at": time.time(),
            "checksum": _checksum(data),
            "data": data,
        }
        payload = orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
        try:
            atomic_write(self.path_for(source_name), payload, durable=self.durable)
        except OSError:
            self.counts["save_errors"] += 1  # the previous checkpoint stays: a replay, never a skip
            raise
        self.counts["saves"] += 1

    def delete(self, source_name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_for(source_name))

    @staticmethod
    def _decode(raw: bytes, source_name: str) -> tuple[str | None, dict[str, Any] | None]:
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return f"not JSON ({error})", None
        if not isinstance(envelope, dict):
            return "not a JSON object", None
        if envelope.get("version") != CHECKPOINT_VERSION:
            return f"unsupported version {envelope.get('version')!r}", None
        if envelope.get("source") != source_name:
            return f"written for source {envelope.get('source')!r}", None
        data = envelope.get("data")
        if not isinstance(data, dict):
            return "no data object", None
        if envelope.get("checksum") != _checksum(data):
            return "checksum mismatch", None
        return None, data

    def _corrupt(self, path: str, source_name: str, problem: str, *, move: bool) -> None:
        self.counts["corrupt"] += 1
        moved = ""
        if move:
            # Kept for a post-mortem, out of the way of the next save; only the latest is kept.
            try:
                os.replace(path, path + ".corrupt")
                moved = f", moved to {os.path.basename(path)}.corrupt"
            except OSError:
                pass
        log.warning(
            "checkpoint %s of source %r is unusable (%s%s); starting it from its configured default",
            path,
            source_name,
            problem,
            moved,
            extra={"source": source_name, "path": path},
        )

    def _remove_stale_temp_files(self) -> None:
        # Left by a crash between creating and renaming a temp file; with the directory locked no
        # other writer can own them. Without the lock they may belong to a live writer: keep them.
        if self._lock is None:
            return
        for name in os.listdir(self.directory):
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
                    self.counts["temp_removed"] += 1
                    log.info("removed a checkpoint temp file left by a crash: %s", name)
