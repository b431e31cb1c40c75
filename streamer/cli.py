"""The `oomstream` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from parsers.events import event_to_json
from streamer.commands import arguments
from streamer.errors import CliError
from streamer.inputs import (
    InputError,
    ScanStats,
    add_scan_arguments,
    check_inputs,
    iter_log_events,
    scan_options_from_args,
)

EXIT_USAGE = 2


def cmd_parse(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    paths: list[str] = args.files or ["-"]
    try:
        check_inputs(paths)
        options = scan_options_from_args(args)
        stats = ScanStats()
        out = stdout.buffer if hasattr(stdout, "buffer") else None
        events = 0
        for event in iter_log_events(paths, options, stats=stats):
            events += 1
            data = event_to_json(event) + b"\n"
            if out is not None:
                out.write(data)
            else:
                stdout.write(data.decode())
    except InputError as error:
        raise CliError(str(error)) from None
    if out is not None:
        out.flush()
    _print_summary(stderr, stats, events)
    return 0


def _print_summary(stderr: TextIO, stats: ScanStats, events: int) -> None:
    scan, assembly, skipped = stats.scan, stats.assembly, stats.skipped
    long_lines = Counter({k: v for k, v in scan.items() if k.startswith("long")})

    def listing(counter: Counter[str]) -> str:
        return ", ".join(f"{key}={value}" for key, value in sorted(counter.items())) or "none"

    stderr.write(
        f"oomstream parse: {stats.files} input(s), {stats.bytes} bytes, {scan['lines']} lines "
        f"({scan['lines_prefiltered']} without OOM keywords skipped unframed)\n"
        f"  records by format: {listing(stats.formats)}\n"
        f"  reports: {assembly['reports']}, events: {events}, partial: {assembly['partial']}, "
        f"bare kills (header rate-limited or lost): {assembly['bare_kills']}\n"
        f"  skipped lines: {listing(skipped + long_lines)}\n"
        f"  untrusted kernel-claiming records: {assembly['untrusted_records'] + skipped['untrusted']}, "
        f"reaper lines attached: {assembly['reaped_attached']}, unmatched: {assembly['reaped_unmatched']}\n"
    )
    if scan["table_rows_reversed"]:
        stderr.write(
            f"  table export listed newest first: {scan['table_rows_reversed']} rows put back in "
            "log order before assembly\n"
        )
    if assembly["summary_only_kills"]:
        stderr.write(
            f"  kills known only from their oom-kill: summary line (kill line filtered or lost; "
            f"partial events): {assembly['summary_only_kills']}\n"
        )
    if stats.unread_times:
        stderr.write(f"  records kept without a time (date not readable): {listing(stats.unread_times)}\n")
    if skipped["journal_blob"]:
        stderr.write(
            f"  warning: {skipped['journal_blob']} unreadable records: journalctl printed them as "
            "'[NB blob data]' (text with control characters or invalid UTF-8, such as a process "
            "name holding a newline); OOM kills among them are lost. Export with "
            "'journalctl --all' or '-o json' to read them\n"
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
    add_scan_arguments(parse)
    parse.set_defaults(handler=cmd_parse)

    # The other commands' arguments come from a light module; each command's code (Kafka, HTTP,
    # Kubernetes clients) is imported only when that command runs.
    arguments.add_run_parser(sub)
    arguments.add_publish_parser(sub)
    arguments.add_tail_parser(sub)
    arguments.add_timeline_parser(sub)
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
