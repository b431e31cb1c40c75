"""The Kafka sink, in parts that read alone: ``records`` (keys, headers, what one event becomes),
``batching`` (aiokafka batch builders per partition), ``delivery`` (in-flight bound, resends,
dead letters, one result per event), ``sink`` (lifecycle and submission). Options, connection,
error classification and start-up diagnosis are the shared Kafka client module, ``streamer.kafka``.
"""

from streamer.kafka import KafkaOptions, classify_kafka_error, connection_kwargs, describe_error
from streamer.sinks.kafka.batching import Partitioner
from streamer.sinks.kafka.records import KEY_GETTERS, event_headers, select_key
from streamer.sinks.kafka.sink import KafkaSink

__all__ = [
    "KEY_GETTERS",
    "KafkaOptions",
    "KafkaSink",
    "Partitioner",
    "classify_kafka_error",
    "connection_kwargs",
    "describe_error",
    "event_headers",
    "select_key",
]
