"""JSON-lines sinks: one event per line on a stream (stdout here, files in file.py).

Partial events are written like any other (they carry ``partial``, ``partial_reason`` and the raw
lines); when a dead-letter stream is given, a dead-letter envelope goes there as well, matching
what the Kafka sink does. ``submit_dead_letter`` writes the envelope to the dead-letter stream, or
to the main stream when there is none (its ``type`` is ``dead_letter``, so readers can tell).
"""

from __future__ import annotations

import abc
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TextIO, cast

from parsers.events import AnyEvent, OomEvent, event_to_json
from streamer.registry import BuildContext, Component
from streamer.sinks.base import (
    REASON_PARTIAL_REPORT,
    DeadLetter,
    DeliveryCallback,
    DeliveryResult,
    DeliveryStatus,
    Sink,
    SinkClosedError,
    dead_letter_to_json,
    producer_host,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry  # loaded with the metrics, not by check-config


class JsonLinesSink(Sink):
    """Shared logic: serialize, write, acknowledge after the write returned."""

    def __init__(
        self,
        *,
        name: str,
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(name=name, on_delivery=on_delivery, registry=registry)
        self._started = False
        self._closed = False
        self._producer_host = producer_host()
        self._m_sent = self.metrics.events_sent.labels(name, "")
        self._m_dead = self.metrics.dead_lettered.labels(name, REASON_PARTIAL_REPORT)

    # -- to implement ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _write_event(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def _write_dead_letter(self, data: bytes) -> bool:
        """Write to the dead-letter destination; False when there is none."""

    def _deliver(self, result: DeliveryResult) -> None:
        """Report now; the file sink may hold results until the next fsync."""
        self._report(result)

    # -- Sink ------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._started = True

    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        self._check_open()
        started = time.perf_counter()
        positions = tuple(positions)
        try:
            self._write_event(event_to_json(event) + b"\n")
            dead_lettered = False
            if isinstance(event, OomEvent) and event.partial:
                letter = DeadLetter.from_event(event, REASON_PARTIAL_REPORT, event.partial_reason)
                dead_lettered = self._write_dead_letter(self._envelope(letter))
                if dead_lettered:
                    self._m_dead.inc()
        except OSError as error:
            self.metrics.events_failed.labels(self.name, "write_error").inc()
            self._report(
                DeliveryResult(
                    event.event_id,
                    positions,
                    DeliveryStatus.FAILED,
                    reason="write_error",
                    error=str(error),
                    latency_seconds=time.perf_counter() - started,
                )
            )
            return
        self._m_sent.inc()
        self._deliver(
            DeliveryResult(
                event.event_id,
                positions,
                DeliveryStatus.ACKED,
                latency_seconds=time.perf_counter() - started,
                dead_lettered=dead_lettered,
            )
        )

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        self._check_open()
        started = time.perf_counter()
        data = self._envelope(letter)
        try:
            if not self._write_dead_letter(data):
                self._write_event(data)
        except OSError as error:
            self.metrics.events_failed.labels(self.name, "write_error").inc()
            self._report(
                DeliveryResult(
                    letter.event_id,
                    tuple(positions),
                    DeliveryStatus.FAILED,
                    reason="write_error",
                    error=str(error),
                    latency_seconds=time.perf_counter() - started,
                )
            )
            return
        self.metrics.dead_lettered.labels(self.name, letter.reason).inc()
        self._deliver(
            DeliveryResult(
                letter.event_id,
                tuple(positions),
                DeliveryStatus.DEAD_LETTERED,
                reason=letter.reason,
                error=letter.error,
                latency_seconds=time.perf_counter() - started,
                dead_lettered=True,
            )
        )

    def _envelope(self, letter: DeadLetter) -> bytes:
        return dead_letter_to_json(letter, producer=self._producer_host) + b"\n"

    def _check_open(self) -> None:
        if self._closed or not self._started:
            state = "closed" if self._closed else "not started"
            raise SinkClosedError(f"{self.name} sink: submit while {state}")


class StdoutSink(JsonLinesSink):
    """Writes to a text or binary stream (default: stdout); acknowledged once written to it."""

    def __init__(
        self,
        stream: TextIO | BinaryIO | None = None,
        *,
        dead_letter_stream: TextIO | BinaryIO | None = None,
        name: str = "stdout",
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(name=name, on_delivery=on_delivery, registry=registry)
        self._stream = sys.stdout if stream is None else stream
        self._dead_stream = dead_letter_stream

    @staticmethod
    def _put(stream: TextIO | BinaryIO, data: bytes) -> None:
        binary = getattr(stream, "buffer", None)
        if binary is not None:
            # Bytes straight to the binary layer: orjson output needs no re-encoding.
            binary.write(data)
        elif isinstance(stream, io.TextIOBase):
            stream.write(data.decode("utf-8", "surrogateescape"))
        else:
            cast(BinaryIO, stream).write(data)

    def _write_event(self, data: bytes) -> None:
        self._put(self._stream, data)

    def _write_dead_letter(self, data: bytes) -> bool:
        if self._dead_stream is None:
            return False
        self._put(self._dead_stream, data)
        return True

    async def flush(self, timeout_seconds: float | None = None) -> None:
        for stream in (self._stream, self._dead_stream):
            if stream is not None:
                stream.flush()

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True


# -- the component: [sinks.stdout] ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StdoutOptions:
    """No options: one JSON object per line on standard output."""


async def build(options: StdoutOptions, context: BuildContext) -> StdoutSink:
    return StdoutSink(sys.stdout.buffer, on_delivery=context.on_delivery, registry=context.metrics.registry)


COMPONENT = Component(options=StdoutOptions, build=build, help="JSON lines on standard output")
