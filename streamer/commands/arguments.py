"""The command line of every subcommand, without the commands: start-up cost follows the command.

``oomstream --help``, ``parse`` and ``check-config`` must not import Kafka, HTTP or Kubernetes
clients (over half a second of start-up on a small node). Each subcommand's arguments are declared
here, from light modules only, and its handler is imported when it runs (``Lazy``).
``tests/unit/test_cli_startup.py`` keeps aiokafka, aiohttp and kubernetes_asyncio out.
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import TYPE_CHECKING, Any, TextIO

from streamer.config import (
    ENV_BOOTSTRAP_ALIAS,
    ConfigError,
    add_cli_arguments,
    load_config,
    overrides_from_args,
)
from streamer.errors import CliError

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


class Lazy:
    """A handler that imports its module when called: ``Lazy("streamer.commands.run", "cmd_run")``."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __call__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
        handler: Any = getattr(importlib.import_module(self.module), self.name)
        code: int = handler(args, stdout, stderr)
        return code


# -- run and check-config ---------------------------------------------------------------------------


def add_run_parser(subparsers: SubParsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="follow this node's kernel log and publish every OOM kill (the node service)",
        description="Follow the kernel log (kmsg, journald or files), assemble OOM reports and publish "
        "events; options come from --config FILE, OOMSTREAM_* variables and these flags.",
    )
    add_cli_arguments(run)
    run.add_argument("--quiet", action="store_true", help="do not print a line per published event")
    run.set_defaults(handler=Lazy("streamer.commands.run", "cmd_run"))
    check = subparsers.add_parser(
        "check-config", help="validate the configuration and print it (secrets masked)"
    )
    add_cli_arguments(check)
    check.set_defaults(handler=cmd_check_config)


def cmd_check_config(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    import orjson

    try:
        config = load_config(args.config_path, os.environ, overrides_from_args(args))
    except ConfigError as error:
        raise CliError(str(error)) from None
    stdout.write(orjson.dumps(config.redacted(), option=orjson.OPT_INDENT_2).decode() + "\n")
    if "kafka" in config.sinks.enabled and not config.components["sinks.kafka"].configured:
        stderr.write(
            "note: sinks.kafka.bootstrap_servers is not set (OOMSTREAM_KAFKA_BOOTSTRAP); "
            "`make run` starts a local broker and sets it\n"
        )
    return 0


# -- publish and tail -------------------------------------------------------------------------------


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The Kafka options of ``oomstream run`` (``--config FILE``, ``--sinks-kafka-*``), shared by
    publish and tail, and their short forms."""
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers, short for --sinks-kafka-bootstrap-servers "
        f"(default: ${ENV_BOOTSTRAP_ALIAS})",
    )
    parser.add_argument(
        "--topic",
        default=None,
        help="events topic, short for --sinks-kafka-events-topic (default: oomstream.events.v1)",
    )
    parser.add_argument(
        "-o",
        "--kafka-option",
        dest="kafka_options",
        action="append",
        metavar="KEY=VALUE",
        help="any Kafka option by its name, e.g. -o security_protocol=SASL_SSL -o sasl_username=u "
        "-o sasl_password_file=/run/secrets/kafka -o linger_ms=10 (repeatable)",
    )
    add_cli_arguments(parser, sections=("sinks.kafka",))


def add_publish_parser(subparsers: SubParsers) -> None:
    from streamer.inputs import add_scan_arguments

    parser = subparsers.add_parser(
        "publish",
        help="parse kernel logs like `parse` and send the events to Kafka",
        description="Parse kernel logs exactly like `oomstream parse` and publish the events to Kafka "
        "(acks=all, idempotent). Exit status 1 if any event failed or was dead-lettered "
        "instead of sent; partial events are sent and also dead-lettered with their raw lines. "
        "Kafka options as for `oomstream run`: --config FILE, OOMSTREAM_SINKS_KAFKA_* variables, "
        "--sinks-kafka-* flags.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="log files (gzip ok); - for stdin")
    add_kafka_arguments(parser)
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    add_scan_arguments(parser)
    parser.set_defaults(handler=Lazy("streamer.commands.publish", "cmd_publish"))


def add_tail_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="print events from the Kafka events topic",
        description="Read the events topic and print each event as JSON or as one readable line. "
        "Without --group and --from-beginning, only new events are shown. Kafka options as for "
        "`oomstream run`: --config FILE, OOMSTREAM_SINKS_KAFKA_* variables, --sinks-kafka-* flags.",
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "--group", default=None, help="consumer group: resume from its committed offsets and commit"
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest event (for a group: only when it has no committed offset)",
    )
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--json", dest="pretty", action="store_false", default=None, help="JSON lines")
    style.add_argument("--pretty", dest="pretty", action="store_true", help="one readable line per event")
    parser.add_argument("--max-events", type=int, default=None, help="stop after N events")
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=None,
        help="stop when no event arrived for this long (default: wait forever)",
    )
    parser.set_defaults(handler=Lazy("streamer.commands.tail", "cmd_tail"))


# -- timeline ----------------------------------------------------------------------------------------


def add_timeline_parser(subparsers: SubParsers) -> None:
    from streamer.timeline import DEFAULT_MAX_PUBLISH_DELAY, DEFAULT_SINCE, GROUP_BY

    parser = subparsers.add_parser(
        "timeline",
        help="OOM kills in kill-time order with their Kubernetes signals (terminal, --json, --html, --serve)",
        description="Read events from the Kafka events topic over a time range (seeking by time; "
        "nothing committed unless --group) or from JSON-lines files (`oomstream parse`, "
        "`tail --json`; - for stdin), join the events of each incident and print them in kill-time "
        "order with a summary. --html writes a self-contained report; --serve a live page. Kafka "
        "options as for `oomstream run`: --config FILE, OOMSTREAM_SINKS_KAFKA_* variables, "
        "--sinks-kafka-* flags; with none, the local broker `make run` started.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="JSON-lines files (gzip ok; - for stdin); none: Kafka"
    )
    when = parser.add_argument_group("range")
    when.add_argument(
        "--since", default=None, help=f"the last DURATION (e.g. 30m, 2h, 7d; Kafka default {DEFAULT_SINCE})"
    )
    when.add_argument("--from", dest="from_time", default=None, help="start: RFC 3339 or a duration ago (2h)")
    when.add_argument(
        "--to", dest="to_time", default=None, help="end (exclusive): RFC 3339, now, or a duration ago"
    )
    pick = parser.add_argument_group("filters (repeatable; an incident matches any value given)")
    pick.add_argument("-n", "--namespace", action="append")
    pick.add_argument("--workload", action="append", help="Kind/name, name, or namespace/Kind/name")
    pick.add_argument("--pod", action="append")
    pick.add_argument("--node", "--host", dest="node", action="append")
    pick.add_argument("--container", action="append")
    pick.add_argument("--incident", action="append", help="incident id or its prefix")
    pick.add_argument(
        "--type", action="append", help="event type: oom_kill, k8s_oom_killed, k8s_evicted, ..."
    )
    parser.add_argument("--group-by", choices=GROUP_BY, default="incident")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", help="one JSON document (summary + groups of incidents)"
    )
    output.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    output.add_argument(
        "--width", type=int, default=None, help="columns (default: the terminal's, 120 when piped)"
    )
    output.add_argument("--html", metavar="FILE", default=None, help="write a self-contained HTML report")
    output.add_argument("--print", action="store_true", help="with --html: print the timeline too")
    live = parser.add_argument_group("live page")
    live.add_argument("--serve", action="store_true", help="serve the live page, following the topic")
    live.add_argument(
        "--listen", default="127.0.0.1:8765", help="HOST:PORT (default 127.0.0.1:8765, loopback)"
    )
    live.add_argument(
        "--window-events", type=int, default=20000, help="events kept in memory by --serve (default 20000)"
    )
    add_kafka_arguments(parser)
    kafka = parser.add_argument_group("reading Kafka")
    kafka.add_argument("--group", default=None, help="commit the offsets read under this consumer group")
    kafka.add_argument(
        "--max-publish-delay",
        default=DEFAULT_MAX_PUBLISH_DELAY,
        help=f"read records published up to this long after --to (default {DEFAULT_MAX_PUBLISH_DELAY}): "
        "kills replayed from the spool are published late",
    )
    parser.set_defaults(handler=Lazy("streamer.commands.timeline", "cmd_timeline"))
