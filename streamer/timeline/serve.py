"""``oomstream timeline --serve``: the timeline page, live, following the events topic.

One consumer (no group, nothing committed) is positioned by time at the start of the range and
then follows the end of every partition. Each new event updates its incident, which is pushed to
every open page as a server-sent event within one fetch wait (``FOLLOW_WAIT_MS``). Memory is
bounded: at most ``window_events`` events are held; past that the oldest incidents are dropped
and the pages told so. The range and filters live in the page's URL, so a link can be shared.
Loopback by default: the page shows pod names and process names, so exposing it is a choice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from aiohttp import web

from streamer.errors import CliError
from streamer.kafka import KafkaOptions
from streamer.timeline.html import page_incident, render_page
from streamer.timeline.model import Filters, Timeline
from streamer.timeline.sources import start_consumer, topic_partitions

FOLLOW_WAIT_MS = 100
CLIENT_QUEUE = 1000  # updates queued for one slow page before it is made to reconnect
KEEPALIVE_SECONDS = 15.0
STATUS_INTERVAL_SECONDS = 1.0  # the page's "events held / records read" line, at most this often


@dataclass
class LiveState:
    timeline: Timeline
    window_events: int
    source: str
    clients: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    kafka_records: int = 0
    _status_sent: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "source": self.describe(),
            "incidents": [page_incident(i) for i in self.timeline.incidents()],
        }

    def describe(self) -> str:
        return (
            f"{self.source}; {self.timeline.events} events held (window {self.window_events}), "
            f"{self.kafka_records} records read"
        )

    def publish(self, kind: str, payload: Any) -> None:
        message = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        for queue in list(self.clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A page that cannot keep up reconnects and gets a fresh snapshot.
                self.clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    def add(self, data: Any) -> None:
        incident = self.timeline.add(data)
        if incident is None:
            return
        # Only the changed incident goes out: the page numbers a workload's repeated kills itself,
        # so a storm in one workload costs one message per event, not one per sibling.
        payload = page_incident(incident)
        if self.timeline.replaced:
            payload["replaces"] = list(self.timeline.replaced)
        self.publish("incident", payload)
        if self.timeline.events > self.window_events:
            # Down to 90% at once: evicting sorts the incidents, so it must not run per event.
            self.publish("evict", self.timeline.evict_oldest(self.window_events * 9 // 10))
        now = time.monotonic()
        if now - self._status_sent >= STATUS_INTERVAL_SECONDS:
            self._status_sent = now
            self.publish("status", self.describe())


async def follow_topic(config: KafkaOptions, since_ms: int, state: LiveState, ready: asyncio.Event) -> None:
    from aiokafka import TopicPartition

    consumer = await start_consumer(config, None, "timeline --serve")
    try:
        assigned = [TopicPartition(config.events_topic, p) for p in await topic_partitions(config)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        found = await consumer.offsets_for_times({tp: since_ms for tp in assigned})
        for tp in assigned:
            start = found[tp]
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=FOLLOW_WAIT_MS)
            for records in batches.values():
                for record in records:
                    state.kafka_records += 1
                    if record.value is None:
                        continue
                    try:
                        data = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        state.timeline.stats.read += 1
                        state.timeline.stats.skip_reasons["not JSON"] += 1
                        continue
                    state.add(data)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)


def build_app(state: LiveState, title: str) -> web.Application:
    page = render_page({"mode": "live", "source": state.source, "incidents": []}, title=title, live=True)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def snapshot(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state.snapshot()), content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        state.clients.add(queue)
        try:
            await response.write(
                b"retry: 1000\nevent: snapshot\ndata: " + orjson.dumps(state.snapshot()) + b"\n\n"
            )
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    message = b": keep-alive\n\n"
                if message is None:
                    break
                await response.write(message)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            state.clients.discard(queue)
        return response

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/stream", stream)
    return app


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


async def serve(
    config: KafkaOptions, since: float, host: str, port: int, window_events: int, stdout: TextIO
) -> None:
    state = LiveState(Timeline(), window_events, f"live: Kafka {config.servers} topic {config.events_topic}")
    app = build_app(state, "oomstream live OOM timeline")
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise CliError(f"--listen {host}:{port}: cannot listen ({error.strerror or error})") from None
    ready = asyncio.Event()
    follower = asyncio.create_task(follow_topic(config, int(since * 1000), state, ready))
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({follower, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if follower in done:
            waiter.cancel()
            follower.result()  # raises the reason it stopped
        shown = f"[{host}]" if ":" in host else host
        stdout.write(
            f"oomstream timeline: serving http://{shown}:{port}/ (following {config.events_topic})\n"
        )
        stdout.flush()
        await follower
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
        for queue in list(state.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        await runner.cleanup()


def serve_from_args(args: argparse.Namespace, filters: Filters, stdout: TextIO, stderr: TextIO) -> int:
    from streamer.commands.publish import kafka_options_and_broker

    if args.files:
        raise CliError("--serve follows the Kafka topic; it takes no FILE arguments")
    if args.window_events < 100:
        raise CliError("--window-events must be at least 100")
    host, port = parse_listen(args.listen)
    config, broker = kafka_options_and_broker(args, "timeline")
    stderr.write(
        f"oomstream timeline: following {config.events_topic} from Kafka at {config.servers} ({broker}), "
        f"keeping at most {args.window_events} events\n"
    )
    since = filters.since if filters.since is not None else time.time() - 3600
    asyncio.run(serve(config, since, host, port, args.window_events, stdout))
    return 0
