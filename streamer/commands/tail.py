"""``oomstream tail``: read the events topic and print events, as JSON lines or one readable line each."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from streamer.commands.arguments import add_tail_parser
from streamer.commands.publish import kafka_options_and_broker
from streamer.errors import CliError
from streamer.kafka import (
    Credentials,
    KafkaOptions,
    Startup,
    connection_kwargs,
    read_credentials_at_connect,
)
from streamer.sinks.base import DEAD_LETTER_TYPE

POLL_MS = 200


def _size(kb: Any) -> str:
    if not isinstance(kb, int):
        return "?"
    if kb >= 1024 * 1024:
        return f"{kb / (1024 * 1024):.1f}GiB"
    if kb >= 1024:
        return f"{kb / 1024:.1f}MiB"
    return f"{kb}KiB"


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if isinstance(mapping, Mapping) and mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def format_event_line(event: Mapping[str, Any]) -> str:
    """One readable line: time, host, where (namespace/pod/container or cgroup), victim, memory."""
    if event.get("type") == DEAD_LETTER_TYPE:
        lines = event.get("raw_lines") or []
        return (
            f"{event.get('time') or '-'} {event.get('host') or '-'} DEAD-LETTER "
            f"reason={event.get('reason')} event={event.get('event_id') or '-'} "
            f"raw_lines={len(lines)}" + (f" error={event['error']}" if event.get("error") else "")
        )
    kind = event.get("type")
    if kind == "incident":
        return _incident_line(event)
    if isinstance(kind, str) and kind.startswith("k8s_"):
        return _signal_line(event)
    when = event.get("time")
    if not when:
        kernel_time = event.get("kernel_time")
        when = f"kernel+{kernel_time:.6f}s" if isinstance(kernel_time, int | float) else "-"
    cgroup = event.get("cgroup") or {}
    kubernetes = event.get("kubernetes") or {}
    namespace = _get(kubernetes, "namespace", "pod_namespace")
    pod = _get(kubernetes, "pod", "pod_name", "name")
    container = _get(kubernetes, "container", "container_name")
    if namespace or pod or container:
        where = "/".join(part or "-" for part in (namespace, pod, container))
    else:
        where = _get(cgroup, "task_memcg", "oom_memcg") or "-"
        if where != "-" and _get(cgroup, "pod_uid"):
            where = f"pod {cgroup['pod_uid']}" + (
                f" container {str(cgroup['container_id'])[:12]}" if cgroup.get("container_id") else ""
            )
    victim = event.get("victim") or {}
    if victim:
        who = f"{victim.get('comm') or '?'}({victim.get('pid') if victim.get('pid') is not None else '?'})"
        rss = _size(victim.get("anon_rss_kb"))
    else:
        who, rss = "?", "?"
    memcg = event.get("memcg") or {}
    usage = f"{_size(memcg.get('usage_kb'))}/{_size(memcg.get('limit_kb'))}" if memcg else "-"
    parts = [
        str(when),
        str(event.get("host") or "-"),
        str(where),
        f"killed {who}",
        f"anon-rss={rss}",
        f"scope={cgroup.get('limit_scope') or '-'}",
        f"memcg={usage}",
    ]
    analysis = event.get("analysis") or {}
    if analysis.get("limit_fired"):
        parts.append(f"limit={analysis['limit_fired']}")
    if event.get("incident_id"):
        parts.append(f"incident={str(event['incident_id'])[:8]}")
    if event.get("partial"):
        parts.append(f"[partial: {event.get('partial_reason') or 'incomplete report'}]")
    return " ".join(parts)


def _signal_line(event: Mapping[str, Any]) -> str:
    where = "/".join(str(event.get(k) or "-") for k in ("namespace", "pod", "container"))
    if where == "-/-/-":
        where = "node"
    parts = [str(event.get("time") or "-"), str(event.get("host") or "-"), where, str(event.get("type"))]
    parts.append(f"reason={event.get('reason')}")
    if event.get("pid") is not None:
        parts.append(f"pid={event.get('pid')} comm={event.get('comm') or '?'}")
    if event.get("incident_id"):
        parts.append(f"incident={str(event['incident_id'])[:8]}")
    return " ".join(parts)


def _incident_line(event: Mapping[str, Any]) -> str:
    kubernetes = event.get("kubernetes") or {}
    where = "/".join(str(kubernetes.get(k) or "-") for k in ("namespace", "pod", "container"))
    return (
        f"{event.get('first_seen') or '-'} {event.get('host') or '-'} {where} INCIDENT "
        f"{str(event.get('incident_id'))[:8]} verdict={event.get('verdict')} kills={event.get('kills')} "
        f"signals={','.join(event.get('signals') or [])} "
        f"visible_in_kubernetes={event.get('visible_in_kubernetes')} "
        f"workload_kills_in_window={event.get('workload_kills_in_window')}"
    )


async def tail_events(
    config: KafkaOptions,
    out: TextIO,
    *,
    group: str | None,
    from_beginning: bool,
    pretty: bool,
    max_events: int | None,
    timeout_seconds: float | None,
) -> int:
    """Print events until max_events, or until nothing arrived for timeout_seconds. Returns the count."""
    from aiokafka import AIOKafkaConsumer

    credentials = Credentials(config)
    kwargs = connection_kwargs(config, credentials=credentials)
    consumer = AIOKafkaConsumer(
        config.events_topic,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
        **kwargs,
    )
    read_credentials_at_connect(consumer, credentials)
    servers = config.servers
    try:
        # The same bounded start and diagnosis (TLS, SASL, unreachable) as the sink's.
        await Startup(config, kwargs, "tail").connect(consumer)
    except Exception as error:
        await _stop_quietly(consumer)
        raise CliError(f"cannot read from Kafka: {error}") from None
    count = 0
    try:
        if config.events_topic not in await consumer.topics():
            raise CliError(f"topic {config.events_topic!r} does not exist on {servers} (--topic)")
        last = time.monotonic()
        binary = getattr(out, "buffer", None)
        while max_events is None or count < max_events:
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            got = False
            for records in batches.values():
                for record in records:
                    got = True
                    count += 1
                    _print_record(record.value, out, binary, pretty)
                    if max_events is not None and count >= max_events:
                        break
                if max_events is not None and count >= max_events:
                    break
            out.flush()
            now = time.monotonic()
            if got:
                last = now
            elif timeout_seconds is not None and now - last >= timeout_seconds:
                break
    finally:
        await _stop_quietly(consumer)
    return count


def _print_record(value: bytes | None, out: TextIO, binary: Any, pretty: bool) -> None:
    if value is None:
        return
    if not pretty:
        line = value.rstrip(b"\n") + b"\n"
        if binary is not None:
            binary.write(line)
        else:
            out.write(line.decode("utf-8", "replace"))
        return
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        out.write(f"(not JSON, {len(value)} bytes) {value[:120]!r}\n")
        return
    if not isinstance(event, dict):
        out.write(f"(unexpected JSON {type(event).__name__}) {value[:120]!r}\n")
        return
    out.write(format_event_line(event) + "\n")


async def _stop_quietly(consumer: Any) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 10)
    except Exception:  # nothing useful to add after the real error
        return


def cmd_tail(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if args.max_events is not None and args.max_events <= 0:
        raise CliError("--max-events must be > 0")
    if args.timeout_seconds is not None and args.timeout_seconds <= 0:
        raise CliError("--timeout-seconds must be > 0")
    config, broker = kafka_options_and_broker(args, "tail")
    pretty = args.pretty if args.pretty is not None else stdout.isatty()
    stderr.write(f"oomstream tail: reading {config.events_topic} from Kafka at {config.servers} ({broker})\n")
    count = asyncio.run(
        tail_events(
            config,
            stdout,
            group=args.group,
            from_beginning=args.from_beginning,
            pretty=pretty,
            max_events=args.max_events,
            timeout_seconds=args.timeout_seconds,
        )
    )
    if stderr.isatty() or args.timeout_seconds is not None:
        stderr.write(f"oomstream tail: {count} event(s) from {config.events_topic}\n")
    return 0


add_parser = add_tail_parser  # the arguments live in streamer/commands/arguments.py (light)
