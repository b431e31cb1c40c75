"""`oomstream run` (the node service) and `oomstream check-config`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from typing import Any, TextIO

import orjson

from parsers.events import AnyEvent, event_to_dict
from parsers.k8s import SignalTracker
from parsers.records import SourcePosition
from streamer.checkpoint import CheckpointStore
from streamer.commands.central import run_central
from streamer.commands.tail import format_event_line
from streamer.config import Config, ConfigError, add_cli_arguments, load_config, overrides_from_args
from streamer.enrich.enricher import Enricher
from streamer.enrich.incidents import Correlator
from streamer.enrich.pid_index import PidIndex
from streamer.enrich.pods import PodCache
from streamer.errors import CliError
from streamer.kube.api import KubeApi, KubeApiConfig, KubeApiError
from streamer.logging_setup import setup_logging
from streamer.metrics import Metrics, MetricsServer, sink_readiness
from streamer.pipeline import (
    SIGNAL_LEDGER_NAME,
    Pipeline,
    PipelineSettings,
    SignalLedger,
    checkpoint_to_position,
)
from streamer.sinks.base import DeliveryResult, Sink, SinkError
from streamer.sinks.file import FileSink
from streamer.sinks.kafka import KafkaSink, KafkaSinkConfig, connection_kwargs
from streamer.sinks.kafka import Secret as SinkSecret
from streamer.sinks.stdout import StdoutSink
from streamer.sources.base import Source, SourceError
from streamer.sources.files import FileSource
from streamer.sources.http import build as build_http
from streamer.sources.journald import JournaldSource
from streamer.sources.k8s_objects import K8sObjectLinesSource
from streamer.sources.k8s_watch import KubeWatchSource
from streamer.sources.kafka_lines import CentralModeError
from streamer.sources.kafka_objects import KafkaObjectsSource
from streamer.sources.kmsg import KmsgSource
from streamer.sources.listeners import ListenerSource
from streamer.sources.select import auto_select
from streamer.sources.signals import SignalSource
from streamer.sources.syslog import build as build_syslog
from streamer.spool import Spool

log = logging.getLogger("oomstream.run")
EXIT_CONFIG = 2
EXIT_RUNTIME = 1



def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config_path, os.environ, overrides_from_args(args))
    except ConfigError as error:
        raise CliError(str(error)) from None


def cmd_check_config(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    config = _load(args)
    stdout.write(orjson.dumps(config.redacted(), option=orjson.OPT_INDENT_2).decode() + "\n")
    if not config.kafka.configured and config.output.sink == "kafka":
        stderr.write(
            "note: kafka.bootstrap_servers is not set (OOMSTREAM_KAFKA_BOOTSTRAP); "
            "`make run` starts a local broker and sets it\n"
        )
    return 0


def cmd_run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    config = _load(args)
    setup_logging(config.log.level, config.log.format, rate_limit_seconds=config.log.rate_limit_seconds)
    if config.output.sink == "kafka" and not config.kafka.configured:
        raise CliError(
            "kafka.bootstrap_servers is not set: set OOMSTREAM_KAFKA_BOOTSTRAP, --kafka-bootstrap-servers "
            "or [kafka] bootstrap_servers (`make run` starts a local broker and sets it), "
            "or choose output.sink = stdout|file"
        )
    try:
        if config.kafka_input.enabled:
            return asyncio.run(run_central(config, kafka_sink_config(config)))
        return asyncio.run(run_service(config, stdout, print_events=not args.quiet))
    except (SourceError, SinkError, KubeApiError, CentralModeError) as error:
        raise CliError(str(error)) from None


def _start_position(store: CheckpointStore, name: str) -> tuple[SourcePosition | None, str | None]:
    saved = store.load(name)
    if not saved:
        return None, None
    return checkpoint_to_position(saved), saved.get("boot_id")


def build_listeners(config: Config) -> list[ListenerSource]:
    """The network listeners that are enabled (syslog, HTTP): kernel lines from shippers."""
    listeners: list[ListenerSource] = []
    if config.syslog.enabled:
        listeners.append(build_syslog(config.syslog))
    if config.http.enabled:
        listeners.append(build_http(config.http))
    return listeners


async def build_sources(config: Config, store: CheckpointStore) -> list[Source]:
    """The local kernel log source and the enabled listeners. With a listener enabled and
    source.kind left at auto (no files), the service only listens: a central collector."""
    listeners: list[Source] = list(build_listeners(config))
    if listeners and config.source.kind == "auto" and not config.source.files:
        return listeners
    return [*await build_local_sources(config, store), *listeners]


async def build_local_sources(config: Config, store: CheckpointStore) -> list[Source]:
    source = config.source
    host = config.resolved_node_name(os.environ)
    kind = source.kind
    if kind == "auto" and source.files:
        kind = "file"
    if kind == "file" or kind == "stdin":
        paths = list(source.files) if kind == "file" else ["-"]
        if not paths:
            raise SourceError("source.kind = file needs source.files (a list of log files)")
        built: list[Source] = []
        for path in paths:
            name = "stdin" if path == "-" else f"file:{os.path.abspath(path)}"
            position, _ = _start_position(store, name)
            built.append(
                FileSource(
                    path,
                    follow=source.follow,
                    start=position if position is not None else "beginning",
                    fmt=source.file_format,
                    host=host,
                )
            )
        return built
    if kind == "kmsg":
        position, boot_id = _start_position(store, "kmsg")
        start: Any = source.kmsg_start
        if start == "checkpoint":
            start = position if position is not None else "oldest"
        return [KmsgSource(source.kmsg_path, start=start, checkpoint_boot_id=boot_id, host=host)]
    if kind == "journald":
        position, _ = _start_position(store, "journald")
        cursor = position.cursor if position is not None else None
        return [
            JournaldSource(
                after_cursor=cursor,
                directory=source.journald_directory,
                since=None if cursor else source.journald_since,
            )
        ]
    # auto: the kind of an existing checkpoint first, then kmsg, then journald
    position, boot_id = _start_position(store, "kmsg")
    if position is None:
        position, boot_id = _start_position(store, "journald")
    chosen = await auto_select(
        checkpoint=position,
        checkpoint_boot_id=boot_id,
        kmsg_path=source.kmsg_path,
        journal_directory=source.journald_directory,
        journal_since=source.journald_since,
        kmsg_start=source.kmsg_start,
        host=host,
    )
    return [chosen]


@dataclasses.dataclass
class KubernetesParts:
    """What [kubernetes] builds: the enricher (always: it also fills `analysis`), the pod cache
    and the API watch when the API is reachable, the object inputs, the correlator."""

    enricher: Enricher
    signal_sources: list[SignalSource]
    correlator: Correlator | None
    watch: KubeWatchSource | None
    mode: str


async def build_kubernetes(
    config: Config, stack: contextlib.AsyncExitStack, env: dict[str, str] | None = None
) -> KubernetesParts:
    kube = config.kubernetes
    environ = dict(os.environ) if env is None else env
    node = config.resolved_node_name(environ)
    mode = kube.resolved_mode(environ)
    if config.source.kind == "stdin" and "-" in kube.objects_files:
        raise CliError("kubernetes.objects_files names stdin (-), but source.kind = stdin reads it already")
    if mode == "kubeconfig" and kube.kubeconfig_path and not os.path.isfile(kube.kubeconfig_path):
        raise CliError(f"kubernetes.kubeconfig_path = {kube.kubeconfig_path!r}: no such file")
    tracker = SignalTracker()
    sources: list[SignalSource] = []
    cache: PodCache | None = None
    watch: KubeWatchSource | None = None
    if mode != "off":
        api = await stack.enter_async_context(
            KubeApi(
                KubeApiConfig(
                    mode=mode,
                    kubeconfig_path=kube.kubeconfig_path,
                    context=kube.context,
                    request_timeout_seconds=kube.request_timeout_seconds,
                )
            )
        )
        cache = PodCache(
            tombstone_seconds=kube.tombstone_seconds,
            label_allowlist=kube.label_allowlist,
            annotation_allowlist=kube.annotation_allowlist,
        )
        watch = KubeWatchSource(
            api,
            node=node,
            cache=cache,
            tracker=tracker,
            pod_signals=kube.pod_signals,
            watch_events=kube.watch_events,
            events_field_selector=kube.events_field_selector,
            watch_timeout_seconds=kube.watch_timeout_seconds,
            stall_timeout_seconds=kube.stall_timeout_seconds,
        )
        sources.append(watch)
    for path in kube.objects_files:
        sources.append(K8sObjectLinesSource(path, follow=kube.objects_follow, node=node, tracker=tracker))
    if kube.objects_kafka_topic:
        if not config.kafka.configured:
            raise CliError("kubernetes.objects_kafka_topic needs kafka.bootstrap_servers")
        # The same brokers and security settings (TLS, SASL) as the sink.
        security = connection_kwargs(kafka_sink_config(config))
        for key in ("bootstrap_servers", "client_id", "request_timeout_ms"):
            security.pop(key, None)
        sources.append(
            KafkaObjectsSource(
                consumer_options=security,
                bootstrap_servers=config.kafka.bootstrap_servers,
                topic=kube.objects_kafka_topic,
                group_id=kube.objects_kafka_group,
                node=node,
                tracker=tracker,
                auto_offset_reset=kube.objects_kafka_offset_reset,
                client_id=config.kafka.client_id,
            )
        )
    correlator = None
    if kube.incidents and sources:  # without a Kubernetes signal there is nothing to correlate
        correlator = Correlator(
            window_seconds=kube.incident_window_seconds,
            workload_window_seconds=kube.workload_window_seconds,
        )
    enricher = Enricher(cache, node=node, wait_seconds=kube.pod_wait_seconds)
    return KubernetesParts(enricher, sources, correlator, watch, mode)


def kafka_sink_config(config: Config) -> KafkaSinkConfig:
    """The sink's view of [kafka], with a literal ``kafka.sasl_password`` carried over
    (``sink_options`` leaves it out: the sink takes no secret values from a mapping)."""
    literal = config.kafka.sasl_password
    return KafkaSinkConfig.from_mapping(
        config.kafka.sink_options(),
        "configuration",
        sasl_password=None if literal is None else SinkSecret(literal.reveal()),
    )


def build_sink(config: Config, metrics: Metrics, pipeline_ref: list[Pipeline]) -> Sink:
    def on_delivery(result: DeliveryResult) -> None:
        pipeline_ref[0].on_delivery(result)

    output = config.output
    if output.sink == "stdout":
        return StdoutSink(sys.stdout.buffer, on_delivery=on_delivery, registry=metrics.registry)
    if output.sink == "file":
        assert output.path is not None
        return FileSink(output.path, on_delivery=on_delivery, registry=metrics.registry)
    sink_config = kafka_sink_config(config)
    # Shutdown must end in bounded time even with every broker gone: whatever is still unsent
    # then is reported failed, so the pipeline spools it and does not checkpoint past it.
    sink_config = dataclasses.replace(
        sink_config,
        close_timeout_seconds=min(
            sink_config.close_timeout_seconds, config.pipeline.shutdown_timeout_seconds
        ),
    )
    return KafkaSink(sink_config, on_delivery=on_delivery, registry=metrics.registry)


async def run_service(config: Config, stdout: TextIO, *, print_events: bool = True) -> int:
    metrics = Metrics()
    # Everything opened here is released in reverse order however the run ends: the sink and
    # the metrics server first, then the Kubernetes API client, the spool, the state directory.
    async with contextlib.AsyncExitStack() as stack:
        store = stack.enter_context(CheckpointStore(config.state.directory))
        spool: Spool | None = None
        if config.spool.enabled and config.output.sink == "kafka":
            spool = stack.enter_context(
                Spool(config.spool.directory, config.spool.max_bytes, config.spool.segment_bytes)
            )
            metrics.track_spool(spool)
        metrics.track_checkpoints(store)
        sources = await build_sources(config, store)
        for source in sources:
            metrics.track_source(source.name, source.counts)
            if isinstance(source, ListenerSource):
                await source.start()  # a port in use is a configuration error, said now
                stack.push_async_callback(source.aclose)
                metrics.track_tally(
                    f"oomstream_{source.name}_records_by_host",
                    f"Records received by the {source.name} listener, per sending host",
                    "host",
                    source.records_by_host,
                )
        framer = getattr(sources[0], "framer", None) if len(sources) == 1 else None
        if framer is not None:
            metrics.track_formats(framer.records_by_format)
            metrics.track_parse_errors(framer.skipped)
        pipe_conf = config.pipeline
        pid_index = None
        if pipe_conf.pid_index_enabled:
            pid_index = PidIndex(refresh_seconds=pipe_conf.pid_index_refresh_seconds)
        pipeline_ref: list[Pipeline] = []
        sink = build_sink(config, metrics, pipeline_ref)

        def published(event: AnyEvent, result: DeliveryResult) -> None:
            metrics.observe_event(event)
            if print_events and config.output.sink != "stdout":
                stdout.write(format_event_line(event_to_dict(event)) + "\n")
                stdout.flush()

        kube = await build_kubernetes(config, stack)
        for signal_source in kube.signal_sources:
            metrics.track_source(signal_source.name, signal_source.counts)
        if kube.watch is not None:
            for watcher in kube.watch.watchers:
                metrics.track_source(watcher.name, watcher.counts)
        metrics.track_source("enrichment", kube.enricher.counts)
        ledger = SignalLedger()
        ledger.load(store.load(SIGNAL_LEDGER_NAME))
        pipeline = Pipeline(
            sources,
            sink,
            checkpoints=store,
            spool=spool,
            pid_index=pid_index,
            enrich=kube.enricher,
            enrich_signal=kube.enricher.enrich_signal,
            signal_sources=kube.signal_sources,
            correlator=kube.correlator,
            signal_ledger=ledger,
            on_published=published,
            settings=PipelineSettings(
                queue_records=pipe_conf.queue_records,
                linger_seconds=pipe_conf.linger_seconds,
                report_timeout_seconds=pipe_conf.report_timeout_seconds,
                checkpoint_interval_seconds=config.state.checkpoint_interval_seconds,
                shutdown_timeout_seconds=pipe_conf.shutdown_timeout_seconds,
                max_tasks=pipe_conf.max_tasks,
            ),
        )
        pipeline_ref.append(pipeline)
        for source in sources:
            if isinstance(source, ListenerSource):
                source.readiness = sink_readiness(lambda: pipeline.sink_healthy, spool)
        metrics.track_queue("records", lambda: pipeline.queue_depth)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, pipeline.stop)
        log.info(
            "oomstream running: sources=%s signals=%s kubernetes=%s sink=%s state=%s",
            ",".join(source.name for source in sources),
            ",".join(s.name for s in kube.signal_sources) or "-",
            kube.mode,
            config.output.sink,
            config.state.directory,
        )
        server: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        if config.metrics.enabled:
            readiness = sink_readiness(lambda: pipeline.sink_healthy, spool)
            server = MetricsServer(metrics, config.metrics.listen_address, readiness)
        async with server, sink:
            await pipeline.run()
    log.info("oomstream stopped: %s", dict(pipeline.counts))
    if pipeline.counts["source_failures"]:
        log.error("a source failed; see the errors above")
        return EXIT_RUNTIME
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="follow this node's kernel log and publish every OOM kill (the node service)",
        description="Follow the kernel log (kmsg, journald or files), assemble OOM reports and publish "
        "events; options come from --config FILE, OOMSTREAM_* variables and these flags.",
    )
    add_cli_arguments(run)
    run.add_argument("--quiet", action="store_true", help="do not print a line per published event")
    run.set_defaults(handler=cmd_run)
    check = subparsers.add_parser(
        "check-config", help="validate the configuration and print it (secrets masked)"
    )
    add_cli_arguments(check)
    check.set_defaults(handler=cmd_check_config)
