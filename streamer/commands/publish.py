"""``oomstream publish FILE...``: parse kernel logs exactly like ``oomstream parse`` and send to Kafka.

The scanning is shared with ``parse`` (streamer/inputs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from streamer.commands.bootstrap import find_bootstrap
from streamer.config import ENV_BOOTSTRAP_ALIAS
from streamer.errors import CliError
from streamer.inputs import (
    InputError,
    ScanOptions,
    add_scan_arguments,
    check_inputs,
    iter_log_events,
    scan_options_from_args,
)
from streamer.sinks.base import REASON_PARTIAL_REPORT, DeliveryTally, FatalSinkError, SinkConfigError
from streamer.sinks.kafka import COMPRESSION_PACKAGES, KafkaSink, KafkaSinkConfig

PROGRESS_INTERVAL_SECONDS = 0.1
EXIT_DELIVERY_PROBLEMS = 1



# -- progress ---------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a TTY; nothing until the final line otherwise."""

    def __init__(self, stream: TextIO, total_bytes: int | None, *, enabled: bool) -> None:
        self.stream = stream
        self.total = total_bytes
        self.enabled = enabled
        self.bytes = 0
        self.events = 0
        self._last = 0.0
        self._drawn = False

    def add_bytes(self, count: int) -> None:
        self.bytes += count

    def update(self, tally: DeliveryTally, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_INTERVAL_SECONDS:
            return
        self._last = now
        width = 30
        if self.total:
            fraction = min(1.0, self.bytes / self.total)
            bar = "#" * int(fraction * width)
            head = f"[{bar:<{width}}] {fraction * 100:5.1f}% {_mib(self.bytes)}/{_mib(self.total)}"
        else:
            head = f"{_mib(self.bytes)} read"
        line = (
            f"{head}  events: {self.events} parsed, {tally.sent} sent, "
            f"{tally.dead_lettered} dead-lettered, {tally.failed} failed"
        )
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f}MiB"


# -- the command --------------------------------------------------------------------------------------


@dataclass
class PublishOutcome:
    files: int
    bytes: int
    events: int
    tally: DeliveryTally
    seconds: float


def kafka_config_from_args(args: argparse.Namespace, command: str) -> KafkaSinkConfig:
    """--bootstrap / env, the named flags and the -o KEY=VALUE options, as one typed config."""
    found = find_bootstrap(args.bootstrap)
    bootstrap = found.servers
    origin = f"oomstream {command} options" + ("" if args.bootstrap else f" and {found.origin}")
    base: dict[str, Any] = {"bootstrap_servers": bootstrap}
    for attribute, key in (
        ("topic", "events_topic"),
        ("dead_letter_topic", "dead_letter_topic"),
        ("compression", "compression"),
        ("topic_policy", "topic_policy"),
        ("max_in_flight", "max_in_flight"),
        ("connect_timeout_seconds", "connect_timeout_seconds"),
    ):
        value = getattr(args, attribute, None)
        if value is not None:
            base[key] = value
    try:
        return KafkaSinkConfig.from_strings(args.kafka_options or [], origin, base=base)
    except SinkConfigError as error:
        raise CliError(str(error)) from None


async def publish_files(
    paths: Sequence[str],
    config: KafkaSinkConfig,
    options: ScanOptions,
    progress: Progress,
) -> PublishOutcome:
    tally = DeliveryTally()
    started = time.perf_counter()
    events = 0
    try:
        async with KafkaSink(config, on_delivery=tally, name="publish") as sink:
            for event in iter_log_events(paths, options, on_progress=progress.add_bytes):
                events += 1
                progress.events = events
                position = event.source.position
                await sink.submit(event, (position,) if position is not None else ())
                progress.update(tally)
            await sink.flush(config.close_timeout_seconds)
    except (FatalSinkError, InputError) as error:
        progress.close()
        raise CliError(str(error)) from None
    except Exception:
        progress.close()
        raise
    progress.update(tally, force=True)
    progress.close()
    return PublishOutcome(len(paths), progress.bytes, events, tally, time.perf_counter() - started)


def cmd_publish(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    paths: list[str] = args.files
    try:
        check_inputs(paths)
        options = scan_options_from_args(args)
    except InputError as error:
        raise CliError(str(error)) from None
    if paths.count("-") > 1:
        raise CliError("stdin (-) can be read only once")
    config = kafka_config_from_args(args, "publish")
    total = 0
    for path in paths:
        if path != "-":
            total += os.path.getsize(path)
    tty = args.progress if args.progress is not None else stderr.isatty()
    progress = Progress(stderr, total or None, enabled=tty)
    outcome = asyncio.run(publish_files(paths, config, options, progress))
    tally = outcome.tally
    rate = outcome.events / outcome.seconds if outcome.seconds > 0 else 0.0
    stderr.write(
        f"oomstream publish: {outcome.files} input(s), {outcome.bytes} bytes, {outcome.events} events "
        f"in {outcome.seconds:.2f}s ({rate:.0f}/s) to {config.events_topic} on "
        f"{','.join(config.bootstrap_servers)}: {tally.sent} sent "
        f"({tally.dead_letter_copies} partial, also dead-lettered), "
        f"{tally.dead_lettered} dead-lettered instead, {tally.failed} failed\n"
    )
    for reason, count in sorted(tally.reasons.items()):
        stderr.write(f"  {reason}: {count}\n")
    for failure in tally.failures[:5]:
        stderr.write(f"  failed {failure.event_id}: {failure.reason}: {failure.error}\n")
    # Partial events dead-lettered by policy are expected; refusals and failures are not.
    refused = tally.dead_lettered - tally.reasons.get(REASON_PARTIAL_REPORT, 0)
    return EXIT_DELIVERY_PROBLEMS if tally.failed or refused else 0


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """Connection options shared by publish and tail."""
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT[,...]",
        help=f"Kafka bootstrap servers (default: ${ENV_BOOTSTRAP_ALIAS}, the file in $OOMSTREAM_CONFIG, "
        "else the local broker `make run` started)",
    )
    parser.add_argument("--topic", default=None, help="events topic (default: oomstream.events.v1)")
    parser.add_argument(
        "-o",
        "--kafka-option",
        dest="kafka_options",
        action="append",
        metavar="KEY=VALUE",
        help="any Kafka sink setting, e.g. -o security_protocol=SASL_SSL -o sasl_username=u "
        "-o sasl_password_file=/run/secrets/kafka -o linger_ms=10 (repeatable)",
    )
    parser.add_argument(
        "--connect-timeout-seconds",
        type=float,
        default=None,
        help="give up connecting after this long (default: 10)",
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="parse kernel logs like `parse` and send the events to Kafka",
        description="Parse kernel logs exactly like `oomstream parse` and publish the events to Kafka "
        "(acks=all, idempotent). Exit status 1 if any event failed or was dead-lettered "
        "instead of sent; partial events are sent and also dead-lettered with their raw lines.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="log files (gzip ok); - for stdin")
    add_kafka_arguments(parser)
    parser.add_argument("--dead-letter-topic", default=None, help="default: oomstream.deadletter.v1")
    parser.add_argument(
        "--compression",
        default=None,
        choices=tuple(COMPRESSION_PACKAGES),
        help="default: zstd (zstd, lz4, snappy need the cramjam package)",
    )
    parser.add_argument(
        "--topic-policy",
        default=None,
        choices=("create", "check"),
        help="create missing topics (default) or only check that they exist",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="unacknowledged events (default 20000)"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    add_scan_arguments(parser)
    parser.set_defaults(handler=cmd_publish)
