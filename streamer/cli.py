"""The `oomstream` command line."""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import BinaryIO, TextIO

from dateutil import tz as dateutil_tz

from parsers.events import OomEvent, event_to_json
from parsers.framing import FORMATS, Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner

CHUNK_BYTES = 1 << 20
EXIT_USAGE = 2


class CliError(Exception):
    """A problem with the user's input that deserves a one-line message, not a traceback."""


@dataclass
class ParseTotals:
    files: int = 0
    bytes: int = 0
    events: int = 0


def _open_input(path: str) -> tuple[BinaryIO, str]:
    if path == "-":
        return sys.stdin.buffer, "stdin"
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a log file") from None
    except PermissionError:
        raise CliError(f"{path}: permission denied") from None
    except OSError as error:
        raise CliError(f"{path}: cannot open: {error.strerror or error}") from None
    magic = handle.peek(2)[:2] if hasattr(handle, "peek") else b""
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb"), "file"  # type: ignore[return-value]
    return handle, "file"


def _chunks(handle: BinaryIO, path: str) -> Iterator[bytes]:
    while True:
        try:
            chunk = handle.read(CHUNK_BYTES)
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise CliError(f"{path}: read failed: {error}") from None
        if not chunk:
            return
        yield chunk


def _resolve_tz(name: str | None) -> tzinfo:
    if name is None or name == "local":
        local = dateutil_tz.tzlocal()
        return local
    zone = dateutil_tz.gettz(name)
    if zone is None:
        raise CliError(f"--tz {name!r}: unknown time zone (use e.g. UTC, Europe/Berlin, local)")
    return zone


def cmd_parse(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    paths: list[str] = args.files or ["-"]
    for path in paths:
        if path != "-" and not os.path.exists(path):
            raise CliError(f"{path}: no such file")
    zone = _resolve_tz(args.tz)
    assembler = Assembler(max_tasks=args.max_tasks)
    formats: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    scan_counts: Counter[str] = Counter()
    totals = ParseTotals()
    out = stdout.buffer if hasattr(stdout, "buffer") else None

    def emit(events: Sequence[OomEvent]) -> None:
        for event in events:
            totals.events += 1
            data = event_to_json(event) + b"\n"
            if out is not None:
                out.write(data)
            else:
                stdout.write(data.decode())

    for path in paths:
        handle, kind = _open_input(path)
        framer = Framer(
            args.format,
            source_kind="stdin" if kind == "stdin" else "file",
            path=None if path == "-" else os.path.abspath(path),
            host=args.host,
            boot_id=args.boot_id,
            year=args.year,
            tz=zone,
        )
        scanner = LogScanner(framer, assembler, max_line_bytes=args.max_line_bytes)
        try:
            for chunk in _chunks(handle, path):
                totals.bytes += len(chunk)
                emit(scanner.feed(chunk))
            emit(scanner.finish())
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
        totals.files += 1
        formats.update(framer.records_by_format)
        skipped.update(framer.skipped)
        scan_counts.update(scanner.counts)
    emit(assembler.flush())
    if out is not None:
        out.flush()
    _print_summary(stderr, totals, formats, skipped, scan_counts, assembler.counts)
    return 0


def _print_summary(
    stderr: TextIO,
    totals: ParseTotals,
    formats: Counter[str],
    skipped: Counter[str],
    scan_counts: Counter[str],
    assembly: Counter[str],
) -> None:
    long_lines = Counter({k: v for k, v in scan_counts.items() if k.startswith("long")})

    def listing(counter: Counter[str]) -> str:
        return ", ".join(f"{key}={value}" for key, value in sorted(counter.items())) or "none"

    stderr.write(
        f"oomstream parse: {totals.files} input(s), {totals.bytes} bytes, {scan_counts['lines']} lines "
        f"({scan_counts['lines_prefiltered']} without OOM keywords skipped unframed)\n"
        f"  records by format: {listing(formats)}\n"
        f"  reports: {assembly['reports']}, events: {totals.events}, partial: {assembly['partial']}, "
        f"bare kills (header rate-limited or lost): {assembly['bare_kills']}\n"
        f"  skipped lines: {listing(skipped + long_lines)}\n"
        f"  untrusted kernel-claiming records: {assembly['untrusted_records'] + skipped['untrusted']}, "
        f"reaper lines attached: {assembly['reaped_attached']}, unmatched: {assembly['reaped_unmatched']}\n"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oomstream",
        description="Turn Linux OOM-killer reports into structured, pod-attributed events.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    parse = sub.add_parser(
        "parse",
        help="parse kernel logs (files, gzip, or - for stdin) and print one JSON event per line",
    )
    parse.add_argument("files", nargs="*", metavar="FILE", help="log files (gzip ok); - or none for stdin")
    parse.add_argument(
        "--format", default="auto", choices=FORMATS, help="input format (default: detect per line)"
    )
    parse.add_argument("--host", default=None, help="host name for records that do not carry one")
    parse.add_argument("--boot-id", default=None, help="boot id for records that do not carry one")
    parse.add_argument(
        "--year",
        type=int,
        default=None,
        help="year for syslog/journalctl dates that omit it (default: this year)",
    )
    parse.add_argument(
        "--tz", default=None, help="time zone of dates printed without one (dmesg -T, syslog); default: local"
    )
    parse.add_argument(
        "--max-tasks", type=int, default=20, help="task table rows kept per event (largest RSS)"
    )
    parse.add_argument(
        "--max-line-bytes", type=int, default=1 << 20, help="longer lines are truncated and counted"
    )
    parse.set_defaults(handler=cmd_parse)

    # Imported here: the Kafka commands pull in aiokafka, which `parse` does not need.
    from streamer.commands import publish, run, tail

    run.add_parser(sub)
    publish.add_parser(sub)
    tail.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args, sys.stdout, sys.stderr)
    except CliError as error:
        sys.stderr.write(f"oomstream {args.command}: error: {error}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `oomstream parse big.log | head` must not print a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
