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
from parsers.table import log_order

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


@dataclass
class _ChunkReader:
    """Reads one input by chunks, counting bytes and reporting on-disk progress."""

    path: str
    handle: BinaryIO
    stats: ScanStats
    on_progress: Callable[[int], None] | None
    consumed: int = 0

    def __call__(self) -> bytes:
        try:
            chunk = self.handle.read(CHUNK_BYTES)
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise InputError(f"{self.path}: read failed: {error}") from None
        self.stats.bytes += len(chunk)
        if chunk and self.on_progress is not None:
            offset = _raw_offset(self.handle)
            step = len(chunk) if offset is None else offset - self.consumed
            self.consumed += step
            self.on_progress(step)
        return chunk


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
        read_chunk = _ChunkReader(path, handle, stats, on_progress)
        try:
            chunk = read_chunk()
            if chunk and is_table_export(chunk, options):
                # Exports are read whole: their rows are put back in log order before assembly.
                parts = [chunk]
                while chunk:
                    chunk = read_chunk()
                    parts.append(chunk)
                yield from table_events(b"".join(parts), framer, options, stats)
                chunk = b""
            while chunk:
                yield from scanner.feed(chunk)
                chunk = read_chunk()
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


def is_table_export(head: bytes, options: ScanOptions) -> bool:
    """Whether a file is a log-search table export (Kibana, Loki, Splunk), from its first lines."""
    if options.format != "auto":
        return False  # table rows are recognised by format detection only
    sniffer = Framer("auto", year=options.year, tz=options.tz)
    lines = head.split(b"\n")[:-1][:50] or [head]
    for line in lines:
        sniffer.frame(line)
    tables = sniffer.records_by_format["table"] + sniffer.skipped["table_header"]
    return tables > 0 and 2 * tables > sum(sniffer.records_by_format.values())


def table_events(
    data: bytes, framer: Framer, options: ScanOptions, stats: ScanStats | None = None
) -> Iterator[OomEvent]:
    """Events of a whole table export: rows framed, put in log order per host, then assembled.

    Exports list newest first by default; fed as they stand, a report would arrive kill line
    first and its summary would make a second event for the same kill.
    """
    records = []
    offset = 0
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    for line in lines:
        record = framer.frame(line[: options.max_line_bytes], offset)
        offset += len(line) + 1
        if record is not None:
            records.append(record)
    hosts, newest_first = log_order(records)
    if stats is not None:
        stats.scan["lines"] += len(lines)
        if newest_first:
            stats.scan["table_rows_reversed"] += len(records)
    for rows in hosts:
        assembler = Assembler(max_tasks=options.max_tasks)
        for record in rows:
            yield from assembler.feed(record)
        yield from assembler.flush()
        if stats is not None:
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
    if is_table_export(data[:CHUNK_BYTES], options):
        return list(table_events(data, framer, options))
    scanner = LogScanner(framer, assembler, max_line_bytes=options.max_line_bytes)
    events = scanner.feed(data)
    events.extend(scanner.finish())
    events.extend(assembler.flush())
    return events
