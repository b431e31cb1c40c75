"""The Kafka sink as a component: the ``[sinks.kafka]`` options and how the sink is built.

The options are the one declaration of every Kafka option, ``streamer.kafka.KafkaOptions``
(shared with ``publish``, ``tail`` and the Kafka inputs), named ``sinks.kafka.*`` here. This module
imports nothing heavy: the sink package (aiokafka) loads when the sink is built.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from streamer.errors import ConfigError
from streamer.kafka.options import KafkaOptions
from streamer.registry import BuildContext, Component

if TYPE_CHECKING:
    from streamer.sinks.kafka import KafkaSink

# Each of the sink's two bounded waits at close (a last flush, then stopping the producer) may use
# this share of pipeline.shutdown_timeout_seconds. Giving each stage the whole budget made an exit
# with the brokers gone take three times as long.
CLOSE_SHARE = 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaSinkOptions(KafkaOptions):
    """``KafkaOptions`` as the ``[sinks.kafka]`` table: errors name ``sinks.kafka.<option>``."""

    SECTION: ClassVar[str] = "sinks.kafka"


def options_for_clients(options: KafkaOptions) -> KafkaOptions:
    """``options`` as Kafka clients use them, named "configuration" in their errors."""
    return dataclasses.replace(options, origin=options.origin or "configuration")


async def build(options: KafkaSinkOptions, context: BuildContext) -> KafkaSink:
    from streamer.sinks.kafka import KafkaSink

    if not options.configured:
        raise ConfigError(
            "sinks.kafka.bootstrap_servers is not set: set OOMSTREAM_KAFKA_BOOTSTRAP, "
            "--sinks-kafka-bootstrap-servers or [sinks.kafka] bootstrap_servers (`make run` starts a "
            "local broker and sets it), or choose sinks.enabled = stdout|file",
            key="sinks.kafka.bootstrap_servers",
        )
    # Shutdown must end in bounded time even with every broker gone: whatever is still unsent
    # then is reported failed, so the pipeline spools it and does not checkpoint past it.
    share = context.config.pipeline.shutdown_timeout_seconds * CLOSE_SHARE
    config = dataclasses.replace(
        options_for_clients(options), close_timeout_seconds=min(options.close_timeout_seconds, share)
    )
    return KafkaSink(config, on_delivery=context.on_delivery, registry=context.metrics.registry)


COMPONENT = Component(
    options=KafkaSinkOptions,
    build=build,
    help="Apache Kafka (events and dead-letter topics)",
    spools=True,
    close_share=CLOSE_SHARE,
)
