"""``oomstream publish FILE...``: parse kernel logs exactly like ``oomstream parse`` and send to Kafka.

The scanning is shared with ``parse`` (streamer/inputs.py); the Kafka options are the service's
(``--config FILE``, ``OOMSTREAM_SINKS_KAFKA_*``, ``--sinks-kafka-*``), read by ``kafka_options_from_args``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from streamer.commands.arguments import add_kafka_arguments, add_publish_parser
from streamer.commands.bootstrap import configured_origin, find_local_broker
from streamer.config import load_config, option_overrides, overrides_from_args
from streamer.errors import CliError, ConfigError
from streamer.inputs import (
    InputError,
    ScanOptions,
    check_inputs,
    iter_log_events,
    scan_options_from_args,
)
from streamer.kafka import KafkaOptions
from streamer.sinks.base import REASON_PARTIAL_REPORT, DeliveryTally, FatalSinkError

__all__ = ["add_kafka_arguments", "add_parser", "cmd_publish", "kafka_options_from_args"]
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


def kafka_options_from_args(args: argparse.Namespace, command: str) -> KafkaOptions:
    """The Kafka options as ``oomstream run`` reads them (``--config`` file, ``OOMSTREAM_SINKS_KAFKA_*``
    variables, ``--sinks-kafka-*`` flags), plus this command's short forms: ``--bootstrap``, ``--topic``
    and ``-o KEY=VALUE``; with no broker named, the local one ``make run`` started."""
    return kafka_options_and_broker(args, command)[0]


def kafka_options_and_broker(args: argparse.Namespace, command: str) -> tuple[KafkaOptions, str]:
    """``kafka_options_from_args`` and where its bootstrap servers came from, for the line each
    reading command prints ("reading TOPIC from Kafka at SERVERS (WHERE)")."""
    origin = f"oomstream {command} options"
    try:
        overrides: dict[str, object] = overrides_from_args(args)
        if args.bootstrap:
            overrides["sinks.kafka.bootstrap_servers"] = args.bootstrap
        if args.topic:
            overrides["sinks.kafka.events_topic"] = args.topic
        overrides.update(option_overrides("sinks.kafka", args.kafka_options or [], origin))
        config = load_config(args.config_path, os.environ, overrides)
    except ConfigError as error:
        raise CliError(str(error)) from None
    kafka: KafkaOptions = config.components["sinks.kafka"]
    if kafka.configured:
        broker = configured_origin(config.origins, args.bootstrap)
    else:
        found = find_local_broker()
        kafka = dataclasses.replace(
            kafka, bootstrap_servers=tuple(s.strip() for s in found.servers.split(",") if s.strip())
        )
        broker = found.origin
        origin += f" and {found.origin}"
    if args.config_path:
        origin += f" and {args.config_path}"
    return dataclasses.replace(kafka, origin=origin), broker


async def publish_files(
    paths: Sequence[str],
    config: KafkaOptions,
    options: ScanOptions,
    progress: Progress,
) -> PublishOutcome:
    tally = DeliveryTally()
    started = time.perf_counter()
    events = 0
    from streamer.sinks.kafka import KafkaSink

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
    config = kafka_options_from_args(args, "publish")
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
        f"{config.servers}: {tally.sent} sent "
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


add_parser = add_publish_parser  # the arguments live in streamer/commands/arguments.py (light)
