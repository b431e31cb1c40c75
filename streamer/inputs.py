"""Reading kernel log files for `oomstream parse` and `oomstream publish`: the same scanning.

Files or stdin (``-``), gzip detected by its magic bytes, one Assembler across all inputs (a
report split by a log rotation joins up), counts kept for the end-of-run summary.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import BinaryIO

from dateutil import tz as dateutil_tz

from parsers.events import OomEvent
from parsers.framing import FORMATS, Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner

CHUNK_BYTES = 1 << 20


class InputError(Exception):
    """An input cannot be read; the message names it."""


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """The parse options of ``oomstream parse``/``publish``."""

    format: str = "auto"
    host: str | None = None
    boot_id: str | None = None
    year: int | None = None
    tz: tzinfo | None = None
    max_tasks: int = 20
    max_line_bytes: int = 1 << 20


@dataclass
class ScanStats:
    """What the end-of-run summary reports."""

    files: int = 0
    bytes: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    unread_times: Counter[str] = field(default_factory=Counter)
    scan: Counter[str] = field(default_factory=Counter)
    assembly: Counter[str] = field(default_factory=Counter)


def resolve_tz(name: str | None) -> tzinfo:
    if name is None or name == "local":
        local: tzinfo = dateutil_tz.tzlocal()
        return local
    zone = dateutil_tz.gettz(name)
    if zone is None:
        raise InputError(f"--tz {name!r}: unknown time zone (use e.g. UTC, Europe/Berlin, local)")
    return zone


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """The parse options shared by ``parse`` and ``publish``; ``scan_options_from_args`` reads them."""
    parser.add_argument(
        "--format", default="auto", choices=FORMATS, help="input format (default: detect per line)"
    )
    parser.add_argument("--host", default=None, help="host name for records that do not carry one")
    parser.add_argument("--boot-id", default=None, help="boot id for records that do not carry one")
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="year for syslog/journalctl dates that omit it (default: this year)",
    )
    parser.add_argument(
        "--tz", default=None, help="time zone of dates printed without one (dmesg -T, syslog); default: local"
    )
    parser.add_argument(
        "--max-tasks", type=int, default=20, help="task table rows kept per event (largest RSS)"
    )
    parser.add_argument(
        "--max-line-bytes", type=int, default=1 << 20, help="longer lines are truncated and counted"
    )


def scan_options_from_args(args: argparse.Namespace) -> ScanOptions:
    """The options of ``add_scan_arguments``; InputError for an unknown ``--tz``."""
    return ScanOptions(
        format=args.format,
        host=args.host,
        boot_id=args.boot_id,
        year=args.year,
        tz=resolve_tz(args.tz),
        max_tasks=args.max_tasks,
        max_line_bytes=args.max_line_bytes,
    )


def open_log(path: str) -> tuple[BinaryIO, int | None]:
    """Open a log file (or ``-`` for stdin); gzip by magic. Returns the handle and its on-disk size."""
    if path == "-":
        return sys.stdin.buffer, None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a log file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as error:
        raise InputError(f"{path}: cannot open: {error.strerror or error}") from None
    size = os.fstat(handle.fileno()).st_size
    if handle.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb"), size  # type: ignore[return-value]
    return handle, size


def check_inputs(paths: Sequence[str]) -> None:
    """Fail before any output when an input is missing (not after half the events are out)."""
    for path in paths:
        if path != "-" and not os.path.exists(path):
            raise InputError(f"{path}: no such file")


def _raw_offset(handle: BinaryIO) -> int | None:
    """Bytes consumed from disk so far (the compressed offset for gzip), for progress."""
    raw = getattr(handle, "fileobj", None) or handle
    try:
        return int(raw.tell())
    except (OSError, ValueError, AttributeError):
        return None


def iter_log_events(
    paths: Sequence[str],
    options: ScanOptions = ScanOptions(),
    *,
    on_progress: Callable[[int], None] | None = None,
    stats: ScanStats | None = None,
) -> Iterator[OomEvent]:
    """Events from log files in order.

    ``on_progress(n)`` is called with the number of on-disk bytes consumed since the last call;
    ``stats`` collects the counts for a summary.
    """
    stats = stats if stats is not None else ScanStats()
    assembler = Assembler(max_tasks=options.max_tasks)
    for path in paths:
        handle, _size = open_log(path)
        framer = Framer(
            options.format,
            source_kind="stdin" if path == "-" else "file",
            path=None if path == "-" else os.path.abspath(path),
            host=options.host,
            boot_id=options.boot_id,
            year=options.year,
            tz=options.tz,
        )
        scanner = LogScanner(framer, assembler, max_line_bytes=options.max_line_bytes)
        consumed = 0
        try:
            while True:
                try:
                    chunk = handle.read(CHUNK_BYTES)
                except (OSError, EOFError, gzip.BadGzipFile) as error:
                    raise InputError(f"{path}: read failed: {error}") from None
                if not chunk:
                    break
                stats.bytes += len(chunk)
                if on_progress is not None:
                    offset = _raw_offset(handle)
                    step = len(chunk) if offset is None else offset - consumed
                    consumed += step
                    on_progress(step)
                yield from scanner.feed(chunk)
            yield from scanner.finish()
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
        stats.files += 1
        stats.formats.update(framer.records_by_format)
        stats.skipped.update(framer.skipped)
        stats.unread_times.update(framer.unread_times)
        stats.scan.update(scanner.counts)
    yield from assembler.flush()
    stats.assembly.update(assembler.counts)


def events_from_bytes(data: bytes, options: ScanOptions = ScanOptions()) -> list[OomEvent]:
    """Parse an in-memory log (tests, tools) with the same pipeline."""
    assembler = Assembler(max_tasks=options.max_tasks)
    framer = Framer(
        options.format,
        source_kind="stdin",
        path=None,
        host=options.host,
        boot_id=options.boot_id,
        year=options.year,
        tz=options.tz,
    )
    scanner = LogScanner(framer, assembler, max_line_bytes=options.max_line_bytes)
    events = scanner.feed(data)
    events.extend(scanner.finish())
    events.extend(assembler.flush())
    return events
