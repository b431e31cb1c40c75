"""`oomstream run` (the node service) and `oomstream check-config`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from typing import Any, TextIO

from parsers.events import AnyEvent, event_to_dict
from parsers.k8s import SignalTracker
from parsers.telemetry import Tally
from streamer import registry
from streamer.checkpoint import CheckpointStore
from streamer.commands.arguments import add_run_parser
from streamer.commands.tail import format_event_line
from streamer.config import Config, ConfigError, load_config, overrides_from_args
from streamer.enrich.enricher import Enricher
from streamer.enrich.incidents import Correlator
from streamer.enrich.pid_index import PidIndex
from streamer.enrich.pods import PodCache
from streamer.errors import CliError
from streamer.kube.api import KubeApi, KubeApiConfig, KubeApiError
from streamer.logging_setup import setup_logging
from streamer.metrics import Metrics, MetricsServer, sink_readiness
from streamer.pipeline import SIGNAL_LEDGER_NAME, Delivery, Pipeline, PipelineSettings, SignalLedger
from streamer.registry import BuildContext
from streamer.sinks.base import DeliveryResult, Sink, SinkError
from streamer.sinks.fanout import FanOutSink
from streamer.sinks.kafka_component import KafkaSinkOptions, options_for_clients
from streamer.sources.base import Source, SourceError
from streamer.sources.k8s_objects import K8sObjectLinesSource
from streamer.sources.k8s_watch import KubeWatchSource
from streamer.sources.kafka_objects import KafkaObjectsSource
from streamer.sources.listeners import ListenerSource
from streamer.sources.signals import SignalSource
from streamer.spool import Spool

log = logging.getLogger("oomstream.run")
EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config_path, os.environ, overrides_from_args(args))
    except ConfigError as error:
        raise CliError(str(error)) from None


def cmd_run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    config = _load(args)
    setup_logging(config.log.level, config.log.format, rate_limit_seconds=config.log.rate_limit_seconds)
    try:
        return asyncio.run(run_service(config, stdout, print_events=not args.quiet))
    except (SourceError, SinkError, KubeApiError, ConfigError) as error:
        raise CliError(str(error)) from None


async def build_sources(context: BuildContext) -> list[Source]:
    """Every enabled source component, built by its registered ``build``."""
    config = context.config
    sources: list[Source] = []
    for name in config.sources.enabled:
        table = f"sources.{name}"
        sources.extend(await registry.component(table).build(config.components[table], context))
    names = [source.checkpoint_key for source in sources]
    duplicated = sorted({key for key in names if names.count(key) > 1})
    if duplicated:
        raise SourceError(f"sources.enabled: two sources would read {', '.join(duplicated)}; enable one")
    return sources


async def build_sink(context: BuildContext) -> Sink:
    """The enabled sinks, built by their registered ``build``: the first decides delivery (its
    results settle the tickets); the others get copies and can never block it (FanOutSink)."""
    config = context.config
    built: list[Sink] = []
    for name in config.sinks.enabled:
        table = f"sinks.{name}"
        # Only the first sink's results settle tickets; the others' are only counted by them.
        own = context if not built else dataclasses.replace(context, on_delivery=_side_result)
        built.append(await registry.component(table).build(config.components[table], own))
    if len(built) == 1:
        return built[0]
    return FanOutSink(built[0], built[1:], registry=context.metrics.registry)


def _sinks_of(sink: Sink) -> list[Sink]:
    """``sink`` and, for a fan-out, each sink it feeds."""
    if isinstance(sink, FanOutSink):
        return [sink.primary, *(side.sink for side in sink.sides)]
    return [sink]


def _side_result(result: DeliveryResult) -> None:
    if not result.acknowledged:
        log.warning(
            "a side sink could not deliver event %s: %s", result.event_id, result.error or result.reason
        )


@dataclasses.dataclass
class KubernetesParts:
    """What [kubernetes] builds: the enricher (always: it also fills `analysis`), the pod cache
    and the API watch when the API is reachable, the object inputs, the correlator."""

    enricher: Enricher
    signal_sources: list[SignalSource]
    correlator: Correlator | None
    watch: KubeWatchSource | None
    mode: str
    tracker: SignalTracker


async def build_kubernetes(
    config: Config, stack: contextlib.AsyncExitStack, env: dict[str, str] | None = None
) -> KubernetesParts:
    kube = config.kubernetes
    environ = dict(os.environ) if env is None else env
    node = config.resolved_node_name(environ)
    mode = kube.resolved_mode(environ)
    if "stdin" in config.sources.enabled and "-" in kube.objects_files:
        raise CliError(
            "kubernetes.objects_files names stdin (-), but sources.enabled has stdin, which reads it"
        )
    if mode == "kubeconfig" and kube.kubeconfig_path and not os.path.isfile(kube.kubeconfig_path):
        raise CliError(f"kubernetes.kubeconfig_path = {kube.kubeconfig_path!r}: no such file")
    tracker = SignalTracker(max_backfill=kube.max_backfill_occurrences)
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
        sources.append(
            K8sObjectLinesSource(
                path,
                follow=kube.objects_follow,
                node=node,
                tracker=tracker,
                max_line_bytes=kube.max_object_line_bytes,
            )
        )
    if kube.objects_kafka_topic:
        kafka = config.options("sinks.kafka", KafkaSinkOptions)
        if not kafka.configured:
            raise CliError("kubernetes.objects_kafka_topic needs sinks.kafka.bootstrap_servers")
        # The same brokers and security settings (TLS, SASL) as the sink.
        sources.append(
            KafkaObjectsSource(
                kafka=options_for_clients(kafka),
                bootstrap_servers=kafka.bootstrap_servers,
                topic=kube.objects_kafka_topic,
                group_id=kube.objects_kafka_group,
                node=node,
                tracker=tracker,
                max_line_bytes=kube.max_object_line_bytes,
                auto_offset_reset=kube.objects_kafka_offset_reset,
                client_id=kafka.client_id,
            )
        )
    correlator = None
    if kube.incidents and sources:  # without a Kubernetes signal there is nothing to correlate
        correlator = Correlator(
            window_seconds=kube.incident_window_seconds,
            workload_window_seconds=kube.workload_window_seconds,
        )
    enricher = Enricher(cache, node=node, wait_seconds=kube.pod_wait_seconds)
    return KubernetesParts(enricher, sources, correlator, watch, mode, tracker)


def pipeline_shutdown_seconds(config: Config) -> float:
    """pipeline.shutdown_timeout_seconds bounds the whole exit: each enabled sink's close takes
    its declared share twice (``Component.close_share``); the pipeline's drain and flush get the
    rest (60 % with the Kafka sink)."""
    shares = sum(registry.component(f"sinks.{name}").close_share for name in config.sinks.enabled)
    return config.pipeline.shutdown_timeout_seconds * (1 - 2 * shares)


@dataclasses.dataclass
class Service:
    """Everything ``oomstream run`` builds from its configuration, before anything runs."""

    config: Config
    metrics: Metrics
    store: CheckpointStore
    spool: Spool | None
    sources: list[Source]
    sink: Sink
    kube: KubernetesParts
    pid_index: PidIndex | None
    pipeline: Pipeline
    server: MetricsServer | None


async def build_service(
    config: Config, stack: contextlib.AsyncExitStack, stdout: TextIO, *, print_events: bool = True
) -> Service:
    """Build every part from ``config``; what needs releasing is entered into ``stack``."""
    metrics = Metrics()
    store = stack.enter_context(CheckpointStore(config.state.directory))
    spool: Spool | None = None
    # The spool holds what the first sink failed to deliver, for sinks whose failures pass.
    if config.spool.enabled and registry.component(f"sinks.{config.sinks.enabled[0]}").spools:
        spool = stack.enter_context(
            Spool(config.spool.directory, config.spool.max_bytes, config.spool.segment_bytes)
        )
        metrics.track_spool(spool)
    metrics.track_checkpoints(store)

    def published(event: AnyEvent, result: DeliveryResult) -> None:
        metrics.observe_event(event)
        if print_events and "stdout" not in config.sinks.enabled:
            stdout.write(format_event_line(event_to_dict(event)) + "\n")
            stdout.flush()

    # Built before the sink: the sink reports each event's outcome to it, which settles the
    # event's ticket (and spools what failed).
    delivery = Delivery(spool=spool, on_published=published)
    context = BuildContext(
        config=config,
        node_name=config.resolved_node_name(os.environ),
        checkpoints=store,
        metrics=metrics,
        on_delivery=delivery.on_result,
        state_directory=config.state.directory,
    )
    sources = await build_sources(context)
    for source in sources:
        metrics.track_source(source.name, source.counts)
    framer = getattr(sources[0], "framer", None) if len(sources) == 1 else None
    if framer is not None:
        metrics.track_formats(framer.records_by_format)
        metrics.track_parse_errors(framer.skipped)
    pipe_conf = config.pipeline
    pid_index = None
    if pipe_conf.pid_index_enabled:
        pid_index = PidIndex(refresh_seconds=pipe_conf.pid_index_refresh_seconds)
    sink = await build_sink(context)

    kube = await build_kubernetes(config, stack)
    for signal_source in kube.signal_sources:
        metrics.track_source(signal_source.name, signal_source.counts)
    if kube.watch is not None:
        for watcher in kube.watch.watchers:
            metrics.track_source(watcher.name, watcher.counts)
    metrics.track_source("enrichment", kube.enricher.counts)
    ledger = SignalLedger(max_ids=config.kubernetes.max_ledger_signals)
    ledger.load(store.load(SIGNAL_LEDGER_NAME))
    metrics.track_signals(kube.tracker.counts, ledger.counts)
    pipeline = Pipeline(
        sources,
        sink,
        checkpoints=store,
        pid_index=pid_index,
        enrich=kube.enricher,
        enrich_signal=kube.enricher.enrich_signal,
        signal_sources=kube.signal_sources,
        correlator=kube.correlator,
        signal_ledger=ledger,
        delivery=delivery,
        settings=PipelineSettings(
            queue_records=pipe_conf.queue_records,
            linger_seconds=pipe_conf.linger_seconds,
            report_timeout_seconds=pipe_conf.report_timeout_seconds,
            checkpoint_interval_seconds=config.state.checkpoint_interval_seconds,
            shutdown_timeout_seconds=pipeline_shutdown_seconds(config),
            max_tasks=pipe_conf.max_tasks,
        ),
    )
    metrics.track_pipeline(pipeline.counts)
    for source in sources:
        metrics.track_bounds(source.counts)
    for signal_source in kube.signal_sources:
        metrics.track_bounds(signal_source.counts)
    for assembler in pipeline.assemblers:
        metrics.track_bounds(assembler.counts)
    if isinstance(sink, FanOutSink):
        metrics.track_tally(
            "oomstream_side_sinks", "Side sinks' tallies (start failures, errors, copies dropped), by name",
            "name", sink.counts,
        )  # fmt: skip
    if pid_index is not None:
        metrics.track_tally(
            "oomstream_pid_index", "Pid index scans and attributions, by name", "name", pid_index.counts
        )
    for part in _sinks_of(sink):
        bounds = getattr(part, "bounds", None)
        if isinstance(bounds, Tally):
            metrics.track_bounds(bounds)
    if kube.correlator is not None:
        metrics.track_bounds(kube.correlator.counts)
    if kube.watch is not None:
        metrics.track_source("pod-cache", kube.watch.cache.counts)
        metrics.track_bounds(kube.watch.cache.counts)
    metrics.track_queue("records", lambda: pipeline.queue_depth)
    metrics.track_sink_health(lambda: pipeline.sink_healthy)
    for source in sources:
        if isinstance(source, ListenerSource):
            # Not ready (Kafka unreachable and the spool nearly full): the HTTP listener answers
            # 503 instead of taking records, from the same check as /readyz.
            source.readiness = sink_readiness(lambda: pipeline.sink_healthy, spool)
            metrics.track_tally(
                f"oomstream_{source.name}_records_by_host",
                f"Records received by the {source.name} listener, per sending host",
                "host",
                source.records_by_host,
            )
    server = None
    if config.metrics.enabled:
        readiness = sink_readiness(lambda: pipeline.sink_healthy, spool)
        server = MetricsServer(metrics, config.metrics.listen_address, readiness)
    return Service(config, metrics, store, spool, sources, sink, kube, pid_index, pipeline, server)


async def run_service(config: Config, stdout: TextIO, *, print_events: bool = True) -> int:
    # Everything opened here is released in reverse order however the run ends: the sink and
    # the metrics server first, then the Kubernetes API client, the spool, the state directory.
    async with contextlib.AsyncExitStack() as stack:
        service = await build_service(config, stack, stdout, print_events=print_events)
        pipeline = service.pipeline
        for source in service.sources:
            if isinstance(source, ListenerSource):
                await source.start()  # a port in use is a configuration error, said now
                stack.push_async_callback(source.aclose)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, pipeline.stop)
        log.info(
            "oomstream running: sources=%s signals=%s kubernetes=%s sink=%s state=%s",
            ",".join(source.name for source in service.sources),
            ",".join(s.name for s in service.kube.signal_sources) or "-",
            service.kube.mode,
            ",".join(config.sinks.enabled),
            config.state.directory,
        )
        server: contextlib.AbstractAsyncContextManager[Any] = service.server or contextlib.nullcontext()
        async with server, service.sink:
            bound_log = asyncio.create_task(service.metrics.log_bound_hits_forever(), name="bound-log")
            try:
                await pipeline.run()
            finally:
                bound_log.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bound_log
    log.info("oomstream stopped: %s", dict(pipeline.counts))
    if pipeline.kernel.fatal_errors:
        raise pipeline.kernel.fatal_errors[0]  # a source that cannot go on (exit 2, its message)
    if pipeline.counts["source_failures"]:
        log.error("a source failed; see the errors above")
        return EXIT_RUNTIME
    return 0


# The arguments and check-config live in streamer/commands/arguments.py: they import nothing heavy.
add_parser = add_run_parser
