"""The one Kafka client module: options, connection (TLS, SASL, secrets re-read at reconnect),
error classification, start-up diagnosis and topic administration, for every Kafka user: the
sink, the Kafka inputs, ``oomstream publish`` and ``oomstream tail``.

``options`` (``KafkaOptions``) imports nothing heavy; the rest (ssl, asyncio, aiokafka when used)
loads on first use, so ``oomstream check-config`` and ``--help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamer.kafka.errors import ErrorClass, classify_kafka_error, describe_error
from streamer.kafka.options import KEY_FIELDS, KafkaOptions, Secret

if TYPE_CHECKING:
    from streamer.kafka.connection import (
        Credentials,
        check_compression,
        connection_kwargs,
        read_credentials_at_connect,
        read_secret,
        security_kwargs,
    )
    from streamer.kafka.startup import Startup

_LAZY = {
    "Credentials": "streamer.kafka.connection",
    "check_compression": "streamer.kafka.connection",
    "connection_kwargs": "streamer.kafka.connection",
    "read_credentials_at_connect": "streamer.kafka.connection",
    "read_secret": "streamer.kafka.connection",
    "security_kwargs": "streamer.kafka.connection",
    "Startup": "streamer.kafka.startup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer.kafka' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
