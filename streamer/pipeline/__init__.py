"""The live pipeline: sources -> kernel assembly -> enrichment -> correlation -> delivery (+ spool).

Each stage is a module of its own, readable alone, and none reaches into another's state:

- ``kernel.py``: source readers, one bounded queue, an assembler per source, pid index
  attribution, and each source's checkpoint (its acknowledgement tracker owns its tickets);
- ``enrichment.py``: pod metadata, a task per event (the processor never waits on the API);
- ``signals.py``: Kubernetes signal sources, the signal ledger (it owns their tickets);
- ``correlation.py``: incident ids on every event, incident summaries;
- ``delivery.py``: the sink, settling tickets from its results, the spool and its drain;
- ``tickets.py``: the ticket every event travels with, settled exactly once.

``Pipeline`` wires them under one ``asyncio.TaskGroup`` with the ticker (report deadlines, pid
index refresh, incident windows, checkpoints, spool drain). A source position is checkpointed
only when every event of every report that started at or before it is delivered or spooled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from parsers.oom import Assembler
from parsers.streams import HostAssemblers
from parsers.telemetry import Tally
from streamer.enrich.pid_index import PidIndex
from streamer.pipeline.correlation import CORRELATION_TELEMETRY, Correlation, Correlator
from streamer.pipeline.delivery import (
    DELIVERY_TELEMETRY,
    SPOOL_DRAIN_BATCH,
    Delivery,
    EventListener,
    decode_spooled,
)
from streamer.pipeline.enrichment import ENRICHMENT_TELEMETRY, Enricher, Enrichment
from streamer.pipeline.kernel import KERNEL_TELEMETRY, CheckpointSink, KernelAssembly
from streamer.pipeline.signals import (
    SIGNAL_INTAKE_TELEMETRY,
    SIGNAL_LEDGER_NAME,
    SignalEnricher,
    SignalIntake,
    SignalLedger,
)
from streamer.pipeline.tickets import Outcome, Ticket
from streamer.sinks.base import DeliveryResult, Sink
from streamer.sources.base import Source
from streamer.sources.signals import SignalSource
from streamer.spool import Spool

# The stages share one tally (oomstream_pipeline_total{name}); each declares its own keys.
PIPELINE_TELEMETRY = (
    KERNEL_TELEMETRY
    + ENRICHMENT_TELEMETRY
    + CORRELATION_TELEMETRY
    + DELIVERY_TELEMETRY
    + SIGNAL_INTAKE_TELEMETRY
)

__all__ = [
    "SIGNAL_LEDGER_NAME",
    "SPOOL_DRAIN_BATCH",
    "CheckpointSink",
    "Correlator",
    "Delivery",
    "Outcome",
    "Pipeline",
    "PipelineSettings",
    "SignalLedger",
    "Ticket",
    "decode_spooled",
]

log = logging.getLogger("oomstream.pipeline")


@dataclass
class PipelineSettings:
    queue_records: int = 10_000
    linger_seconds: float = 2.5
    report_timeout_seconds: float = 10.0
    tick_seconds: float = 0.25
    checkpoint_interval_seconds: float = 1.0
    shutdown_timeout_seconds: float = 10.0
    max_tasks: int = 20


class Pipeline:
    def __init__(
        self,
        sources: Sequence[Source],
        sink: Sink,
        *,
        checkpoints: CheckpointSink | None = None,
        spool: Spool | None = None,
        pid_index: PidIndex | None = None,
        enrich: Enricher | None = None,
        on_published: EventListener | None = None,
        settings: PipelineSettings | None = None,
        signal_sources: Sequence[SignalSource] = (),
        enrich_signal: SignalEnricher | None = None,
        correlator: Correlator | None = None,
        signal_ledger: SignalLedger | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        """``delivery``: the stage whose ``on_result`` the sink was built with (the service builds
        it before the sink); without one, the sink's results must reach ``on_delivery``."""
        self.settings = settings or PipelineSettings()
        self.checkpoints = checkpoints
        self.counts: Tally = PIPELINE_TELEMETRY.tally()
        if delivery is None:
            delivery = Delivery(spool=spool, on_published=on_published)
        delivery.counts = self.counts
        delivery.connect(sink)
        self.delivery = delivery
        self.correlation = Correlation(correlator, delivery, self.counts)
        self.enrichment = Enrichment(enrich, self.correlation, delivery, self.counts)
        self.kernel = KernelAssembly(
            sources,
            self.enrichment.kernel_event,
            queue_records=self.settings.queue_records,
            linger_seconds=self.settings.linger_seconds,
            report_timeout_seconds=self.settings.report_timeout_seconds,
            max_tasks=self.settings.max_tasks,
            pid_index=pid_index,
            counts=self.counts,
        )
        self.signals = SignalIntake(
            signal_sources,
            enrich=enrich_signal,
            correlation=self.correlation,
            delivery=delivery,
            ledger=signal_ledger,
            counts=self.counts,
        )
        self._stopping = asyncio.Event()
        self._processed = asyncio.Event()
        self._stop_requested_at: float | None = None  # the shutdown budget counts from here

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Graceful stop: sources close, queued records drain, reports flush, tickets settle."""
        if not self._stopping.is_set():
            self._stop_requested_at = time.monotonic()
        self._stopping.set()

    @property
    def sink(self) -> Sink:
        return self.delivery.sink

    @property
    def signal_ledger(self) -> SignalLedger | None:
        return self.signals.ledger

    @property
    def assemblers(self) -> list[Assembler | HostAssemblers]:
        """Each kernel source's assembler (for their telemetry)."""
        return self.kernel.assemblers

    @property
    def queue_depth(self) -> int:
        return self.kernel.queue_depth

    @property
    def sink_healthy(self) -> bool:
        """False after a delivery failed for good, until the next one succeeds (for /readyz)."""
        return self.delivery.healthy

    def on_delivery(self, result: DeliveryResult) -> None:
        """The sink's delivery callback, when the sink was built before this pipeline."""
        self.delivery.on_result(result)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self.kernel.start(group)
                signal_readers = self.signals.start(group)
                group.create_task(self._process(), name="process")
                ticker = group.create_task(self._tick(), name="tick")
                stopper = group.create_task(self._stop_sources_on_request(), name="stopper")
                await self._processed.wait()
                if self.kernel.has_sources:
                    # The kernel input ended (a backfill, or a stop): so does listening for signals.
                    await self.signals.close(endless_only=True)
                if signal_readers:
                    await asyncio.wait(signal_readers)
                ticker.cancel()  # nothing is fed any more; what is left is settled below
                stopper.cancel()
                await self.enrichment.settle()
                await self.correlation.flush()
        finally:
            await self._finish()

    async def _process(self) -> None:
        try:
            await self.kernel.process(stopping=self._stopping)
        finally:
            self._processed.set()

    async def _stop_sources_on_request(self) -> None:
        await self._stopping.wait()
        await self.kernel.close_sources()
        await self.signals.close()

    async def _tick(self) -> None:
        last_checkpoint = 0.0
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            now = time.monotonic()
            await self.kernel.tick(now)
            await self.correlation.tick(time.time())
            self.kernel.settle(self.delivery.flush_spool)
            if now - last_checkpoint >= self.settings.checkpoint_interval_seconds:
                self._checkpoint()
                last_checkpoint = now
            await self.delivery.drain_spool()

    def _checkpoint(self) -> None:
        if self.checkpoints is None:
            return
        if not self.delivery.flush_spool():
            return  # checkpoints may cover spooled events only once they are on disk
        self.signals.save_ledger(self.checkpoints)
        self.kernel.checkpoint(self.checkpoints)

    async def _finish(self) -> None:
        budget = self.settings.shutdown_timeout_seconds
        if self._stop_requested_at is not None:
            budget -= time.monotonic() - self._stop_requested_at  # the drain used part of it
        try:
            await asyncio.wait_for(self.sink.flush(), max(budget, 0.0))
        except (TimeoutError, Exception):
            log.warning("sink did not flush within %.1f s", max(budget, 0.0))
        self.kernel.settle(self.delivery.flush_spool)
        self._checkpoint()
