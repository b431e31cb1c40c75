"""The one Kafka client module: options, connection (TLS, SASL, secrets re-read at reconnect),
error classification, start-up diagnosis and topic administration, for every Kafka user: the
sink, the Kafka inputs, ``oomstream publish`` and ``oomstream tail``.

Importing this package does not import aiokafka (``check-config`` and ``--help`` load the options).
"""

from streamer.kafka.connection import (
    Credentials,
    check_compression,
    connection_kwargs,
    read_credentials_at_connect,
    read_secret,
    security_kwargs,
)
from streamer.kafka.errors import ErrorClass, classify_kafka_error, describe_error
from streamer.kafka.options import KEY_FIELDS, KafkaOptions, Secret
from streamer.kafka.startup import Startup

__all__ = [
    "KEY_FIELDS",
    "Credentials",
    "ErrorClass",
    "KafkaOptions",
    "Secret",
    "Startup",
    "check_compression",
    "classify_kafka_error",
    "connection_kwargs",
    "describe_error",
    "read_credentials_at_connect",
    "read_secret",
    "security_kwargs",
]
