"""parsers.streams.HostAssemblers: one assembler per host, oldest pending report across hosts."""

from __future__ import annotations

from parsers.oom import Assembler
from parsers.records import KernelRecord, SourcePosition
from parsers.streams import HostAssemblers

HEADER = "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
KILL = (
    "Memory cgroup out of memory: Killed process {pid} (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
    "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0"
)


def record(host: str, offset: int, message: str, t: float) -> KernelRecord:
    return KernelRecord(message, "dmesg", kernel_time=t, host=host, position=SourcePosition("syslog", offset))


def test_interleaved_reports_of_two_hosts_stay_apart() -> None:
    streams = HostAssemblers(lambda: Assembler(linger_seconds=0.1))
    events = streams.feed(record("a", 0, HEADER, 1.0))
    events += streams.feed(record("b", 1, HEADER, 50.0))
    assert streams.needs_every_line("a") and streams.needs_every_line("b")
    assert not streams.needs_every_line("c")
    assert streams.oldest_pending_position() == SourcePosition("syslog", 0)
    events += streams.feed(record("b", 2, KILL.format(pid=2), 50.0))
    events += streams.feed(record("a", 3, KILL.format(pid=1), 1.0))
    events += streams.flush()
    assert sorted((e.host, e.victim.pid) for e in events if e.victim) == [("a", 1), ("b", 2)]
    assert streams.streams == 2 and not streams.busy


async def test_a_listener_hears_its_durable_position_even_when_a_checkpoint_ran_first() -> None:
    # The checkpoint once moved a listener's last position itself (saving {}), so settle() saw
    # nothing new and the HTTP sender waited for its answer until ack_timeout_seconds.
    import asyncio
    from collections.abc import AsyncIterator
    from typing import Any

    from parsers.events import OomEvent
    from streamer.pipeline.kernel import KernelAssembly
    from streamer.pipeline.tickets import Outcome, Ticket
    from streamer.sinks.base import DeliveryResult, DeliveryStatus
    from streamer.sources.base import SOURCE_TELEMETRY

    lines = [
        "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "memory: usage 1024kB, limit 1024kB, failcnt 1",
        "Memory cgroup out of memory: Killed process 9 (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
        "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]

    class Listener:
        name, checkpoint_key, many_hosts = "listener", "listener:x", True

        def __init__(self) -> None:
            self.counts = SOURCE_TELEMETRY.tally()
            self.told: list[int | None] = []

        async def records(self) -> AsyncIterator[KernelRecord]:
            for offset, line in enumerate(lines):
                yield KernelRecord(line, "syslog-5424", host="h", position=SourcePosition("listener", offset))

        def start_position(self) -> SourcePosition | None:
            return None

        def checkpoint_data(self, position: SourcePosition) -> dict[str, Any]:
            return {}

        async def aclose(self) -> None:
            return None

        def settled(self, position: SourcePosition) -> None:
            self.told.append(position.offset)

    tickets: list[Ticket] = []

    async def emit(event: OomEvent, ticket: Ticket) -> None:
        tickets.append(ticket)

    source = Listener()
    kernel = KernelAssembly(
        [source], emit, queue_records=10, linger_seconds=0.1, report_timeout_seconds=1.0, max_tasks=20
    )
    async with asyncio.TaskGroup() as group:
        kernel.start(group)
        await kernel.process(stopping=asyncio.Event())  # the input ends: the report is flushed
    [ticket] = tickets
    ticket.settle(Outcome.DELIVERED, DeliveryResult(ticket.event.event_id, (ticket,), DeliveryStatus.ACKED))

    class Store:
        def save(self, source_name: str, data: dict[str, Any]) -> None:
            return None

    kernel.checkpoint(Store())  # the ticker's checkpoint may run before the listener is settled
    kernel.settle(lambda: True)
    assert source.told == [2]  # every record, the kill line included, is durable
