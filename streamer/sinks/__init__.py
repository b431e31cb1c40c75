"""Where events leave the process: Kafka, stdout, files (see base.py for the interface)."""

from streamer.sinks.base import (
    DeadLetter,
    DeliveryCallback,
    DeliveryResult,
    DeliveryStatus,
    DeliveryTally,
    FatalSinkError,
    RetriableSinkError,
    Sink,
    SinkClosedError,
    SinkConfigError,
    SinkError,
    dead_letter_to_json,
    sink_metrics,
)
from streamer.sinks.file import FileSink
from streamer.sinks.stdout import StdoutSink

__all__ = [
    "DeadLetter",
    "DeliveryCallback",
    "DeliveryResult",
    "DeliveryStatus",
    "DeliveryTally",
    "FatalSinkError",
    "FileSink",
    "RetriableSinkError",
    "Sink",
    "SinkClosedError",
    "SinkConfigError",
    "SinkError",
    "StdoutSink",
    "dead_letter_to_json",
    "sink_metrics",
]
