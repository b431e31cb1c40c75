"""``oomstream timeline``: OOM kills in kill-time order, incidents joined, from Kafka or JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from streamer.commands.arguments import add_timeline_parser
from streamer.commands.publish import kafka_options_and_broker
from streamer.errors import CliError
from streamer.timeline import DEFAULT_SINCE
from streamer.timeline.model import (
    Filters,
    Group,
    Timeline,
    group_incidents,
    parse_time,
    summarize,
)
from streamer.timeline.sources import KafkaRange, KafkaReadStats, iter_json_lines, read_kafka_range
from streamer.timeline.terminal import Style, render

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(text: str, option: str) -> float:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise CliError(f"{option} {text!r}: not a duration (examples: 90s, 30m, 2h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_moment(text: str, option: str, now: float) -> float:
    """RFC 3339, ``now``, or a duration ago (``2h``, ``-2h``, ``2h ago``)."""
    value = text.strip()
    if value.lower() == "now":
        return now
    relative = value.lower().removesuffix("ago").strip().removeprefix("-")
    if _DURATION.match(relative):
        return now - parse_duration(relative, option)
    moment = parse_time(value)
    if moment is None:
        raise CliError(
            f"{option} {text!r}: not a time (RFC 3339 like 2026-12-04T14:00:00Z, 'now', "
            "or a duration ago like 2h)"
        )
    return moment


def filters_from_args(args: argparse.Namespace, now: float) -> Filters:
    if args.since and args.from_time:
        raise CliError("--since and --from both give the start of the range: use one")
    since = None
    if args.since:
        since = now - parse_duration(args.since, "--since")
    elif args.from_time:
        since = parse_moment(args.from_time, "--from", now)
    until = parse_moment(args.to_time, "--to", now) if args.to_time else None
    if since is not None and until is not None and until <= since:
        raise CliError("--to must be later than the start of the range")
    return Filters(
        since=since,
        until=until,
        namespaces=frozenset(args.namespace or ()),
        workloads=frozenset(args.workload or ()),
        pods=frozenset(args.pod or ()),
        nodes=frozenset(args.node or ()),
        containers=frozenset(args.container or ()),
        incidents=frozenset(args.incident or ()),
        types=frozenset(args.type or ()),
    )


def load_timeline(args: argparse.Namespace, filters: Filters, stderr: TextIO) -> tuple[Timeline, str]:
    """Read every event of the source into a Timeline; returns it and a line naming the source."""
    timeline = Timeline()
    if args.files:
        bad: list[str] = []

        def on_bad_line(path: str, number: int, reason: str) -> None:
            timeline.stats.read += 1
            timeline.stats.skip_reasons["not JSON"] += 1
            if len(bad) < 5:
                bad.append(f"{path}:{number}: {reason}")
                stderr.write(f"oomstream timeline: skipped {path}:{number}: {reason}\n")

        timeline.add_all(iter_json_lines(args.files, on_bad_line))
        names = ", ".join("stdin" if p == "-" else p for p in args.files)
        return timeline, f"{names} ({timeline.stats.read} events read)"
    config, broker = kafka_options_and_broker(args, "timeline")
    servers = config.servers
    stderr.write(f"oomstream timeline: reading {config.events_topic} from Kafka at {servers} ({broker})\n")
    now = time.time()
    since = filters.since if filters.since is not None else now - parse_duration(DEFAULT_SINCE, "--since")
    window = KafkaRange(
        since_ms=int(since * 1000),
        until_ms=int(filters.until * 1000) if filters.until is not None else None,
        max_publish_delay_ms=int(parse_duration(args.max_publish_delay, "--max-publish-delay") * 1000),
        group=args.group,
    )
    stats = KafkaReadStats()

    async def consume() -> None:
        async for value in read_kafka_range(config, window, stats):
            try:
                timeline.add(orjson.loads(value))
            except orjson.JSONDecodeError:
                timeline.stats.read += 1
                timeline.stats.skip_reasons["not JSON"] += 1

    asyncio.run(consume())
    return timeline, (
        f"Kafka {servers} topic {config.events_topic}: {stats.records} records from "
        f"{stats.partitions} partition(s), seeked by time"
    )


def cmd_timeline(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    now = time.time()
    filters = filters_from_args(args, now)
    if not args.files and filters.since is None:
        # Kafka: never the whole topic by default.
        filters = Filters(**{**filters.__dict__, "since": now - parse_duration(DEFAULT_SINCE, "--since")})
    if args.serve:
        from streamer.timeline.serve import serve_from_args

        return serve_from_args(args, filters, stdout, stderr)
    timeline, source = load_timeline(args, filters, stderr)
    incidents = timeline.incidents(filters)
    groups = group_incidents(incidents, args.group_by)
    summary = summarize(incidents)
    stats = timeline.stats
    source += f"; {stats.duplicates} duplicate(s) shown once" if stats.duplicates else ""
    if stats.skip_reasons:
        skipped = ", ".join(f"{reason}: {count}" for reason, count in stats.skip_reasons.most_common())
        source += f"; skipped {sum(stats.skip_reasons.values())} ({skipped})"
        stderr.write(f"oomstream timeline: skipped {sum(stats.skip_reasons.values())} input(s): {skipped}\n")
    if args.html:
        from streamer.timeline.html import write_report

        size = write_report(Path(args.html), incidents, summary, source=source, filters=filters)
        stderr.write(
            f"oomstream timeline: wrote {args.html} ({size / 1024:.0f} KiB, {summary.kills} kill(s), "
            f"{summary.incidents} incident(s))\n"
        )
        if not args.json and not args.print:
            return 0
    if args.json:
        write_json(stdout, {**summary.to_dict(), "source": source, "group_by": args.group_by}, groups)
        return 0
    style = Style(colour=_colour(args.color, stdout), width=_width(args.width, stdout))
    for line in render(groups, summary, style, source=source, group_by=args.group_by):
        stdout.write(line + "\n")
    stdout.flush()
    return 0


def write_json(stdout: TextIO, summary: dict[str, Any], groups: list[Group]) -> None:
    """``{"summary": ..., "groups": [{"key", "incidents": [...]}]}``, written one incident at a
    time: 100,000 incidents as Python objects at once would take gigabytes."""
    out = getattr(stdout, "buffer", None)

    def emit(data: bytes) -> None:
        if out is not None:
            out.write(data)
        else:
            stdout.write(data.decode())

    emit(b'{"summary":' + orjson.dumps(summary) + b',"groups":[')
    for group_number, group in enumerate(groups):
        emit((b"," if group_number else b"") + b'{"key":' + orjson.dumps(group.key) + b',"incidents":[')
        for number, incident in enumerate(group.incidents):
            emit((b"," if number else b"") + orjson.dumps(incident.to_dict()))
        emit(b"]}")
    emit(b"]}\n")
    if out is not None:
        out.flush()
    else:
        stdout.flush()


def _colour(choice: str, stdout: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _width(requested: int | None, stdout: TextIO) -> int:
    if requested is not None:
        if requested < 40:
            raise CliError("--width must be at least 40")
        return requested
    if stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 40 else 120


add_parser = add_timeline_parser  # the arguments live in streamer/commands/arguments.py (light)
