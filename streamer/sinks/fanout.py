"""Several sinks at once: one primary sink decides delivery; side sinks get copies.

The primary (the first of ``sinks.enabled``, usually Kafka) receives every event with its ticket
and reports the outcome that settles it (and spools it on failure). Each side sink (a Kubernetes
Event sink, stdout for debugging) receives a copy through a bounded queue of its own, drained by
its own task: a side sink that is slow, failing or down never delays or fails primary delivery.
A full side queue drops the copy, counted and logged; a side sink that cannot start is logged
and left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from parsers.events import AnyEvent
from parsers.telemetry import Count, Tally, Telemetry
from streamer.sinks.base import DeadLetter, Sink

FANOUT_TELEMETRY = Telemetry(
    "fanout",
    (
        Count("{}_start_failures", "side sinks that did not start, by sink"),
        Count("{}_errors", "events a side sink failed on, by sink"),
        Count("{}_dropped", "events a side sink was too far behind to take, by sink"),
    ),
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry  # loaded with the metrics, not by check-config

log = logging.getLogger("oomstream.sinks.fanout")

SIDE_QUEUE_EVENTS = 10_000
SIDE_CLOSE_SECONDS = 5.0


class _Side:
    def __init__(self, sink: Sink, queue_events: int) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[AnyEvent] = asyncio.Queue(queue_events)
        self.task: asyncio.Task[None] | None = None
        self.running = False


class FanOutSink(Sink):
    def __init__(
        self,
        primary: Sink,
        sides: Sequence[Sink],
        *,
        registry: CollectorRegistry | None = None,
        queue_events: int = SIDE_QUEUE_EVENTS,
    ) -> None:
        super().__init__(name="fanout", registry=registry)
        self.primary = primary
        self.sides = [_Side(sink, queue_events) for sink in sides]
        self.counts: Tally = FANOUT_TELEMETRY.tally()
        for side in self.sides:  # each side's series visible from zero
            name = side.sink.name
            self.counts[f"{name}_start_failures"] = self.counts[f"{name}_errors"] = 0
            self.counts[f"{name}_dropped"] = 0

    async def start(self) -> None:
        await self.primary.start()
        for side in self.sides:
            try:
                await side.sink.start()
            except Exception as error:
                self.counts[f"{side.sink.name}_start_failures"] += 1
                log.error(
                    "side sink %s did not start (%s); events go on to %s",
                    side.sink.name,
                    error,
                    self.primary.name,
                )
                continue
            side.running = True
            side.task = asyncio.create_task(self._feed(side), name=f"side-sink:{side.sink.name}")

    async def _feed(self, side: _Side) -> None:
        while True:
            event = await side.queue.get()
            try:
                await side.sink.submit(event)
            except Exception:
                self.counts[f"{side.sink.name}_errors"] += 1
                log.exception("side sink %s failed on event %s", side.sink.name, event.event_id)
            finally:
                side.queue.task_done()

    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        await self.primary.submit(event, positions)
        for side in self.sides:
            if not side.running:
                continue
            try:
                side.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.counts[f"{side.sink.name}_dropped"] += 1
                log.warning(
                    "side sink %s is behind; dropped its copy of event %s", side.sink.name, event.event_id
                )

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        await self.primary.submit_dead_letter(letter, positions)

    async def flush(self, timeout_seconds: float | None = None) -> None:
        await self.primary.flush(timeout_seconds)
        for side in self.sides:
            if side.running:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(side.queue.join(), timeout_seconds or SIDE_CLOSE_SECONDS)
                    await side.sink.flush(timeout_seconds)

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            for side in self.sides:
                if not side.running:
                    continue
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(side.queue.join(), SIDE_CLOSE_SECONDS)
                if side.task is not None:
                    side.task.cancel()
                with contextlib.suppress(Exception):
                    await side.sink.close()
                side.running = False
