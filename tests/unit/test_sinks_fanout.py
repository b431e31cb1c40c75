"""Several sinks at once: the first decides delivery; a side sink that is stuck, failing or down
never delays or fails it (the Kubernetes Event sink will run beside Kafka)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from parsers.events import AnyEvent
from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner
from streamer.sinks.base import DeadLetter, DeliveryTally, Sink
from streamer.sinks.fanout import FanOutSink
from streamer.sinks.stdout import StdoutSink

SAMPLE = Path(__file__).resolve().parents[2] / "streamer" / "samples" / "6.6-oom-group-kill.dmesg"


def events() -> list[AnyEvent]:
    scanner = LogScanner(Framer("auto"), Assembler())
    found = scanner.feed(SAMPLE.read_bytes()) + scanner.finish() + scanner.assembler.flush()
    assert len(found) >= 2
    return list(found)


class StuckSink(Sink):
    """A side sink whose submit never returns (a hung API server), or whose start fails."""

    def __init__(self, *, fail_start: bool = False) -> None:
        super().__init__(name="stuck", registry=CollectorRegistry())
        self.fail_start = fail_start
        self.received = 0

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionRefusedError("no API server")

    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        self.received += 1
        await asyncio.Event().wait()

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        return None

    async def flush(self, timeout_seconds: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("fail_start", [False, True])
async def test_a_stuck_or_dead_side_sink_never_blocks_the_primary(fail_start: bool) -> None:
    out, tally = io.BytesIO(), DeliveryTally()
    primary = StdoutSink(out, on_delivery=tally, registry=CollectorRegistry())
    side = StuckSink(fail_start=fail_start)
    copied = io.BytesIO()
    copies = StdoutSink(copied, registry=CollectorRegistry(), name="copy")
    fanout = FanOutSink(primary, [side, copies], registry=CollectorRegistry(), queue_events=1)
    given = events()
    async with fanout:
        for event in given:
            await asyncio.wait_for(fanout.submit(event, [event.event_id]), 2)
        await asyncio.wait_for(fanout.flush(1), 10)
    assert tally.sent == len(given) and tally.failed == 0  # every result came from the primary
    assert out.getvalue().count(b"\n") == len(given)
    if fail_start:
        assert side.received == 0 and fanout.counts["stuck_start_failures"] == 1
    else:
        # one copy in the stuck submit, one in its queue, the rest dropped and counted
        assert side.received == 1 and fanout.counts["stuck_dropped"] == len(given) - 2
    assert copied.getvalue().count(b"\n") == len(given)  # a healthy side sink gets every copy
