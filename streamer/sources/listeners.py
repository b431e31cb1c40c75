"""What the network listeners (syslog, HTTP) share: the record queue, numbering, counters, TLS.

A listener is one source for the pipeline whose records come from many hosts: ``many_hosts``
asks the pipeline for one assembler per host. Records are numbered as they arrive
(``SourcePosition(kind, offset=n)``). The listener's events travel with delivery tickets owned by
its source state in the pipeline (streamer/pipeline/kernel.py); every tick the pipeline calls
``settled(position)`` with the newest position that no unsettled ticket precedes (every record up
to it durable: its events delivered or spooled, or no event owed), which is when the HTTP
listener answers 2xx. Listeners resume nothing: a sender that got no answer resends, so their
``checkpoint_key`` (``syslog:<address>``, ``http:<address>``) holds ``{}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from parsers.framing import Framer
from parsers.records import KernelRecord, SourcePosition
from parsers.shipper import EnvelopeFramer
from parsers.telemetry import Count, Tally, Telemetry
from streamer.config import OptionError
from streamer.sources.base import SOURCE_TELEMETRY, FramedSource, SourceError

log = logging.getLogger("oomstream.sources.listeners")

# What every listener counts; each adds its own (syslog.py, http.py).
LISTENER_TELEMETRY = SOURCE_TELEMETRY + Telemetry(
    "listener",
    (
        Count("connections_opened", "connections accepted"),
        Count("connections_closed", "connections ended"),
        Count("frame_errors", "messages that made the framer fail (a bug, logged; the listener goes on)"),
        Count("bad_json", "messages that start like JSON but are not"),
    ),
)


def parse_listen_address(key: str, address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); OptionError naming option ``key`` otherwise."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535 or not host:
        raise OptionError(key, f"{address!r} is not host:port (e.g. 127.0.0.1:5140)")
    return host.strip("[]"), int(port_text)


def check_positive(options: object, *names: str) -> None:
    """OptionError naming the first of ``names`` that is not > 0."""
    for name in names:
        value = getattr(options, name)
        if value <= 0:
            raise OptionError(name, f"must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Server certificate and key, and (optionally) the CA that client certificates must chain to."""

    cert_path: str | None
    key_path: str | None
    client_ca_path: str | None

    def check(self) -> None:
        if (self.cert_path is None) != (self.key_path is None):
            raise OptionError("tls_cert_path", "set both tls_cert_path and tls_key_path, or neither")
        if self.client_ca_path is not None and self.cert_path is None:
            raise OptionError(
                "tls_client_ca_path",
                "needs tls_cert_path and tls_key_path (client certificates are checked only over TLS)",
            )

    def server_context(self, section: str) -> ssl.SSLContext | None:
        if self.cert_path is None or self.key_path is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
            if self.client_ca_path is not None:
                context.load_verify_locations(self.client_ca_path)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as error:
            raise SourceError(f"{section}: cannot load TLS files: {error}") from None
        return context


class ListenerSource(FramedSource):
    """Base of the listeners: records go on a bounded queue that ``records()`` drains."""

    many_hosts = True
    kind = "listener"

    def __init__(self, name: str, *, checkpoint_key: str, queue_records: int, telemetry: Telemetry) -> None:
        self.name = name
        self.checkpoint_key = checkpoint_key
        self.queue_records = queue_records
        self.counts: Tally = telemetry.tally()
        self.records_by_host: Counter[str] = Counter()
        # Counters only: each connection frames with its own Framer sharing these tallies.
        self._framer = Framer("auto", source_kind=self.kind)
        self._queue: asyncio.Queue[KernelRecord | None] = asyncio.Queue(queue_records)
        self._next = 0
        self._settled = -1
        self._settled_changed = asyncio.Event()
        self._closed = False
        # Set by the service: (ready, why) of the sink and spool; the HTTP listener answers 503
        # instead of taking records that could only be lost or wait.
        self.readiness: Callable[[], tuple[bool, str]] | None = None
        self._ending: asyncio.Task[None] | None = None
        # Open connections (task serving it -> its writer), closed when the listener stops.
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    # -- Source ----------------------------------------------------------------------------
    def start_position(self) -> SourcePosition | None:
        return None

    def checkpoint_data(self, position: SourcePosition) -> dict[str, Any]:
        return {}  # nothing to resume: senders resend what got no answer

    async def records(self) -> AsyncIterator[KernelRecord]:
        while True:
            record = await self._queue.get()
            if record is None:
                return
            yield record

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop()
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            # The reader is behind: end it after what is queued (kept referenced until done).
            self._ending = asyncio.get_running_loop().create_task(self._queue.put(None))

    async def start(self) -> None:
        """Bind the listening sockets (SourceError when that fails); the service calls this first."""
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def _close_connections(self) -> None:
        """End every open connection: each reader sees the end and finishes its last frame."""
        for writer in list(self._connections.values()):
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)

    def settled(self, position: SourcePosition) -> None:
        """Every record numbered up to ``position.offset`` is durable."""
        if position.offset is not None and position.offset > self._settled:
            self._settled = position.offset
            self._settled_changed.set()
            self._settled_changed = asyncio.Event()

    async def wait_settled(self, offset: int, timeout_seconds: float) -> bool:
        """Wait until the record numbered ``offset`` is durable; False after the timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while self._settled < offset:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled_changed.wait(), left)
        return True

    @property
    def queue_free(self) -> int:
        return self._queue.maxsize - self._queue.qsize()

    # -- for the listeners -----------------------------------------------------------------
    def envelope_framer(self, default_host: str | None) -> EnvelopeFramer:
        framer = Framer("auto", source_kind=self.kind)
        framer.records_by_format = self._framer.records_by_format
        framer.skipped = self._framer.skipped
        return EnvelopeFramer(framer, default_host=default_host)

    def next_position(self) -> SourcePosition:
        position = SourcePosition(self.kind, self._next)
        self._next += 1
        return position

    def numbered(self, record: KernelRecord) -> KernelRecord:
        """``record`` with its arrival number (a unique position the pipeline can track)."""
        self.counts["records"] += 1
        self.records_by_host[record.host or "-"] += 1
        if (
            record.position is not None
            and record.position.kind == self.kind
            and record.position.offset is not None
        ):
            return record
        return record._replace(position=self.next_position())

    async def put(self, record: KernelRecord) -> None:
        """Queue a record, waiting while the pipeline is behind (TCP and HTTP backpressure)."""
        await self._queue.put(self.numbered(record))

    def put_nowait(self, record: KernelRecord) -> bool:
        """Queue a record if there is room (UDP: no way to slow the sender); False when full."""
        try:
            self._queue.put_nowait(self.numbered(record))
        except asyncio.QueueFull:
            return False
        return True


def peer_host(peername: object) -> str | None:
    """The address part of a socket's peer name (the host of records whose message names none)."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return None
