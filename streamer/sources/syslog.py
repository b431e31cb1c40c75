"""Syslog listener: kernel lines from rsyslog, syslog-ng and anything else that speaks syslog.

TCP with RFC 6587 framing (octet counting or newline, decided per frame), optionally TLS
(RFC 5425), and UDP (one message per datagram). RFC 3164 and RFC 5424 messages, and JSON
records (an rsyslog or syslog-ng JSON template sent over the same transport), are framed by
``parsers.shipper``; the host comes from the message, else the peer address.

Backpressure: a TCP connection is not read while the pipeline's queue is full, so the sender's
own queue (rsyslog's action queue, syslog-ng's disk buffer) absorbs the burst. UDP cannot be
slowed: a datagram that finds the queue full is counted (``udp_dropped_queue_full``) and logged.

Bad frames (oversized, cut short, garbled length) are counted and logged; the connection and its
good frames go on. Per connection a summary is logged when it closes; per host, records are
counted in ``records_by_host``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from parsers.records import KernelRecord
from parsers.shipper import DEFAULT_MAX_FRAME_BYTES, FRAME_TELEMETRY, EnvelopeFramer, SyslogFrameSplitter
from parsers.telemetry import Count, Telemetry
from streamer.config import OptionError, option_help
from streamer.registry import BuildContext, Component
from streamer.sources.base import SourceError
from streamer.sources.listeners import (
    LISTENER_TELEMETRY,
    ListenerSource,
    TlsFiles,
    check_positive,
    parse_listen_address,
    peer_host,
)

log = logging.getLogger("oomstream.sources.syslog")
READ_BYTES = 64 << 10
MAX_UDP_PEERS = 10_000

SYSLOG_TELEMETRY = (
    LISTENER_TELEMETRY
    + FRAME_TELEMETRY
    + Telemetry(
        "syslog",
        (
            Count("connections_refused", "TCP connections refused: max_connections were open"),
            Count("connection_errors", "TCP connections that failed while reading"),
            Count("udp_datagrams", "UDP datagrams received"),
            Count("udp_dropped_queue_full", "UDP messages dropped: the record queue was full"),
            Count("udp_errors", "UDP socket errors"),
        ),
    )
)


@dataclass(frozen=True, slots=True)
class SyslogOptions:
    """``[sources.syslog]``: the syslog listener."""

    tcp_listen_address: str | None = field(
        default="127.0.0.1:5140",
        metadata=option_help("TCP host:port (RFC 6587 octet counting or newline framing); empty: no TCP"),
    )
    udp_listen_address: str | None = field(
        default=None, metadata=option_help("UDP host:port (one message per datagram); unset: no UDP")
    )
    tls_cert_path: str | None = field(
        default=None, metadata=option_help("PEM certificate: TCP speaks TLS (RFC 5425) when set")
    )
    tls_key_path: str | None = field(default=None, metadata=option_help("PEM private key of tls_cert_path"))
    tls_client_ca_path: str | None = field(
        default=None, metadata=option_help("PEM CA bundle: require client certificates signed by it")
    )
    max_frame_bytes: int = field(
        default=DEFAULT_MAX_FRAME_BYTES, metadata=option_help("longer frames are dropped and counted")
    )
    max_connections: int = field(
        default=1000, metadata=option_help("TCP connections beyond this are refused")
    )
    queue_records: int = field(
        default=10_000, metadata=option_help("records buffered before TCP reading pauses (UDP: dropped)")
    )

    def __post_init__(self) -> None:
        check_positive(self, "max_frame_bytes", "max_connections", "queue_records")
        if not self.tcp_listen_address and not self.udp_listen_address:
            raise OptionError(
                "tcp_listen_address", "neither tcp_listen_address nor udp_listen_address is set"
            )
        for key in ("tcp_listen_address", "udp_listen_address"):
            address = getattr(self, key)
            if address:
                parse_listen_address(key, address)
        self.tls.check()

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert_path, self.tls_key_path, self.tls_client_ca_path)


async def build(options: SyslogOptions, context: BuildContext) -> list[SyslogSource]:
    return [SyslogSource(options)]


class SyslogSource(ListenerSource):
    kind = "syslog"

    def __init__(self, options: SyslogOptions) -> None:
        addresses = [a for a in (options.tcp_listen_address, options.udp_listen_address) if a]
        super().__init__(
            "syslog",
            checkpoint_key="syslog:" + ",".join(addresses),
            queue_records=options.queue_records,
            telemetry=SYSLOG_TELEMETRY,
        )
        self.tcp_listen_address = options.tcp_listen_address or None
        self.udp_listen_address = options.udp_listen_address or None
        self.tls = options.tls
        self.max_frame_bytes = options.max_frame_bytes
        self.max_connections = options.max_connections
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.udp_address: tuple[str, int] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.tcp_listen_address is not None:
            host, port = parse_listen_address("tcp_listen_address", self.tcp_listen_address)
            context = self.tls.server_context("sources.syslog")
            try:
                self._tcp = await asyncio.start_server(self._serve, host, port, ssl=context, limit=READ_BYTES)
            except OSError as error:
                raise SourceError(
                    f"sources.syslog.tcp_listen_address {self.tcp_listen_address}: {error.strerror or error}"
                ) from None
            self.tcp_address = self._tcp.sockets[0].getsockname()[:2]
            log.info("syslog: listening on tcp %s:%d%s", *self.tcp_address, " (TLS)" if context else "")
        if self.udp_listen_address is not None:
            host, port = parse_listen_address("udp_listen_address", self.udp_listen_address)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, port)
                )
            except OSError as error:
                raise SourceError(
                    f"sources.syslog.udp_listen_address {self.udp_listen_address}: {error.strerror or error}"
                ) from None
            self._udp = transport
            self.udp_address = transport.get_extra_info("sockname")[:2]
            log.info("syslog: listening on udp %s:%d", *self.udp_address)

    async def _stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        await self._close_connections()
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # -- TCP -------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = peer_host(writer.get_extra_info("peername"))
        if len(self._connections) >= self.max_connections:
            self.counts["connections_refused"] += 1
            log.warning(
                "syslog: refusing %s: %d connections open (sources.syslog.max_connections)",
                peer,
                len(self._connections),
            )
            writer.close()
            return
        self._connections[task] = writer
        self.counts["connections_opened"] += 1
        splitter = SyslogFrameSplitter(self.max_frame_bytes)
        framer = self.envelope_framer(peer)
        received = 0
        logged = 0  # bad frames of this connection logged so far
        try:
            while True:
                try:
                    data = await reader.read(READ_BYTES)
                except (ConnectionError, OSError) as error:
                    self.counts["connection_errors"] += 1
                    log.warning("syslog: connection from %s failed: %s", peer, error)
                    break
                if not data:
                    last = splitter.finish()
                    if last is not None:
                        await self._frame(last, framer, peer)
                    break
                received += len(data)
                for frame in splitter.feed(data):
                    await self._frame(frame, framer, peer)
                logged = self._note_bad_frames(splitter, peer, logged)
        finally:
            self._note_bad_frames(splitter, peer, logged)
            self._connections.pop(task, None)
            self.counts["connections_closed"] += 1
            for key, value in splitter.counts.items():
                self.counts[key] += value
            log.info(
                "syslog: connection from %s closed: %d bytes, %d frames, %d oversized, %d cut short",
                peer, received,
                splitter.counts["frames_octet_counted"] + splitter.counts["frames_newline"],
                splitter.counts["oversized_frames"], splitter.counts["truncated_frames"],
            )  # fmt: skip
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _note_bad_frames(self, splitter: SyslogFrameSplitter, peer: str | None, logged: int) -> int:
        """Log the connection's bad frames once more arrived than ``logged``; the new count."""
        bad = splitter.counts["oversized_frames"] + splitter.counts["truncated_frames"]
        if bad > logged:
            log.warning(
                "syslog: %s sent %d bad frames so far (over sources.syslog.max_frame_bytes=%d or cut "
                "short); skipped",
                peer, bad, self.max_frame_bytes,
            )  # fmt: skip
        return bad

    async def _frame(self, frame: bytes, framer: EnvelopeFramer, peer: str | None) -> None:
        record = self.frame_message(frame, framer, peer)
        if record is not None:
            await self.put(record)

    def frame_message(self, frame: bytes, framer: EnvelopeFramer, peer: str | None) -> KernelRecord | None:
        """One syslog message (or JSON record) to a record; never raises on bad input."""
        position = self.next_position()
        try:
            if frame[:1] == b"{":
                try:
                    obj = orjson.loads(frame)
                except orjson.JSONDecodeError:
                    self.counts["bad_json"] += 1
                    log.warning(
                        "syslog: %s sent a frame that starts like JSON but is not: %.80r", peer, frame
                    )
                    return framer.frame_line(frame, position)
                return framer.frame_object(obj, position)
            return framer.frame_line(frame, position)
        except Exception:  # a parser bug must cost one frame, not the listener
            self.counts["frame_errors"] += 1
            log.exception("syslog: cannot frame a message from %s: %.120r", peer, frame)
            return None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, source: SyslogSource) -> None:
        self.source = source
        self.framers: dict[str, EnvelopeFramer] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = self.source
        peer = str(addr[0])
        framer = self.framers.get(peer)
        if framer is None:
            if len(self.framers) >= MAX_UDP_PEERS:
                self.framers.clear()
            framer = self.framers[peer] = source.envelope_framer(peer)
        source.counts["udp_datagrams"] += 1
        if len(data) > source.max_frame_bytes:
            source.counts["oversized_frames"] += 1
            log.warning(
                "syslog: udp datagram of %d bytes from %s over sources.syslog.max_frame_bytes; skipped",
                len(data),
                peer,
            )
            return
        record = source.frame_message(data.rstrip(b"\r\n\x00"), framer, peer)
        if record is not None and not source.put_nowait(record):
            source.counts["udp_dropped_queue_full"] += 1
            log.warning("syslog: record queue full; dropped a udp datagram from %s", peer)

    def error_received(self, exc: Exception) -> None:
        self.source.counts["udp_errors"] += 1
        log.warning("syslog: udp error: %s", exc)


COMPONENT = Component(
    options=SyslogOptions,
    build=build,
    help="syslog listener for log shippers (TCP with RFC 6587 framing, optional TLS, UDP)",
)
