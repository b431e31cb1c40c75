"""`oomstream run` in central mode ([kafka_input] enabled): Kafka lines in, events out, in
transactions (see streamer/sources/kafka_lines.py)."""

from __future__ import annotations

import asyncio
import signal
import socket

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from parsers.events import OomEvent
from streamer.config import Config
from streamer.errors import CliError
from streamer.metrics import Metrics, MetricsServer
from streamer.sinks.kafka import (
    KafkaSink,
    KafkaSinkConfig,
    connection_kwargs,
    describe_error,
    event_headers,
    select_key,
)
from streamer.sources.kafka_lines import CentralMode, default_transactional_id


async def run_central(config: Config, kafka_sink_config: KafkaSinkConfig) -> int:
    """Run until SIGTERM/SIGINT; ``kafka_sink_config`` is [kafka] as the sink reads it."""
    if config.output.sink != "kafka":
        raise CliError("kafka_input.enabled (central mode) publishes to Kafka only: set output.sink = kafka")
    options = config.kafka_input
    # The sink prepares (checks or creates) the events topics exactly as for the node service.
    preparer = KafkaSink(kafka_sink_config, on_delivery=lambda result: None, registry=CollectorRegistry())
    await preparer.start()
    await preparer.close()
    host = socket.gethostname().encode()
    key_fields = kafka_sink_config.key_fields

    def key_of(event: OomEvent) -> bytes | None:
        return select_key(event, key_fields)

    def headers_of(event: OomEvent) -> list[tuple[str, bytes]]:
        return event_headers(event.event_id, host)

    central = CentralMode(
        options,
        connection=connection_kwargs(kafka_sink_config),
        events_topic=kafka_sink_config.events_topic,
        key_of=key_of,
        headers_of=headers_of,
        transactional_id=options.transactional_id or default_transactional_id(config.resolved_node_name()),
        linger_seconds=config.pipeline.linger_seconds,
        report_timeout_seconds=config.pipeline.report_timeout_seconds,
        max_tasks=config.pipeline.max_tasks,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, central.stop)
    metrics = Metrics()
    metrics.track_source("kafka_input", central.counts)
    metrics.track_formats(central.records_by_format)
    metrics.track_parse_errors(central.skipped)
    try:
        if config.metrics.enabled:
            async with MetricsServer(metrics, config.metrics.listen_address):
                await central.run()
        else:
            await central.run()
    except KafkaError as error:
        servers = ",".join(kafka_sink_config.bootstrap_servers)
        raise CliError(f"central mode: Kafka at {servers}: {describe_error(error)}") from None
    return 0
