"""HTTP listener: kernel lines POSTed by log shippers (Vector's ``http`` sink, Fluent Bit's
``http`` output, anything that sends NDJSON or plain lines).

Body: newline-delimited JSON objects (each a shipper envelope, see ``parsers.shipper``), a JSON
array of them (Fluent Bit ``format json``), or plain log lines; ``Content-Encoding: gzip`` is
inflated with a bound. One request is all or nothing for the sender:

- 2xx only once every record of the request is durable: its events acknowledged by the sink or
  written to the spool, or no event owed (the pipeline's ``settled``);
- 429 with ``Retry-After`` when the record queue has no room for the request (nothing taken);
- 503 with ``Retry-After`` when the service is not ready (Kafka unreachable and the spool
  nearly full: nothing taken), or when the records were taken but did not become durable
  within ``ack_timeout_seconds`` (the sender resends; the events keep their ids, so consumers
  drop the repeats);
- 413 over ``max_body_bytes`` (compressed or inflated), 400 for a body that cannot be read at
  all, 401 without the bearer token when one is configured.

Lines that do not parse are counted (``bad_json``, framer ``skipped``) and logged, and do not
fail the request: resending them would not make them parse. Loopback by default; TLS with
optional client certificates, and a bearer token, when configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from parsers.records import KernelRecord
from parsers.shipper import EnvelopeFramer
from parsers.telemetry import Count, Telemetry
from streamer.config import option_help
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

log = logging.getLogger("oomstream.sources.http")

HTTP_TELEMETRY = LISTENER_TELEMETRY + Telemetry(
    "http",
    (
        Count("requests", "HTTP requests received"),
        Count("responses_{}", "responses by status code (200, 400, 401, 413, 429, 503...)"),
        Count("requests_refused_not_ready", "requests answered 503: the service was not ready"),
        Count("requests_backpressured", "requests answered 429: the record queue had no room"),
        Count("requests_not_durable_in_time", "requests answered 503: not durable in ack_timeout_seconds"),
    ),
)
MAX_HEAD_BYTES = 16 << 10
_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
    429: "Too Many Requests", 503: "Service Unavailable",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """``[sources.http]``: the HTTP listener."""

    listen_address: str = field(
        default="127.0.0.1:9881", metadata=option_help("host:port (loopback by default: expose deliberately)")
    )
    max_body_bytes: int = field(
        default=10 << 20, metadata=option_help("larger request bodies (compressed or inflated) get 413")
    )
    ack_timeout_seconds: float = field(
        default=30.0, metadata=option_help("answer 503 when a request's records are not durable by then")
    )
    retry_after_seconds: int = field(default=5, metadata=option_help("Retry-After sent with 429 and 503"))
    bearer_token_path: str | None = field(
        default=None,
        metadata=option_help("file holding the token clients must send as Authorization: Bearer"),
    )
    tls_cert_path: str | None = field(
        default=None, metadata=option_help("PEM certificate: serve HTTPS when set")
    )
    tls_key_path: str | None = field(default=None, metadata=option_help("PEM private key of tls_cert_path"))
    tls_client_ca_path: str | None = field(
        default=None, metadata=option_help("PEM CA bundle: require client certificates signed by it")
    )
    request_timeout_seconds: float = field(
        default=30.0, metadata=option_help("a request must arrive whole within this")
    )
    queue_records: int = field(
        default=10_000, metadata=option_help("records buffered; a request that does not fit gets 429")
    )

    def __post_init__(self) -> None:
        check_positive(
            self,
            "max_body_bytes",
            "ack_timeout_seconds",
            "retry_after_seconds",
            "request_timeout_seconds",
            "queue_records",
        )
        parse_listen_address("listen_address", self.listen_address)
        self.tls.check()

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert_path, self.tls_key_path, self.tls_client_ca_path)


async def build(options: HttpOptions, context: BuildContext) -> list[HttpSource]:
    return [HttpSource(options)]


class _Reject(Exception):
    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


class HttpSource(ListenerSource):
    kind = "http"

    def __init__(self, options: HttpOptions) -> None:
        super().__init__(
            "http",
            checkpoint_key=f"http:{options.listen_address}",
            queue_records=options.queue_records,
            telemetry=HTTP_TELEMETRY,
        )
        self.options = options  # read where used: no copies to drift
        self._server: asyncio.Server | None = None
        self._token: bytes | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        if self.options.bearer_token_path is not None:
            try:
                with open(self.options.bearer_token_path, "rb") as handle:
                    self._token = handle.read().strip()
            except OSError as error:
                raise SourceError(
                    f"sources.http.bearer_token_path {self.options.bearer_token_path}: "
                    f"{error.strerror or error}"
                ) from None
            if not self._token:
                raise SourceError(
                    f"sources.http.bearer_token_path {self.options.bearer_token_path}: the file is empty"
                )
        host, port = parse_listen_address("listen_address", self.options.listen_address)
        context = self.options.tls.server_context("sources.http")
        try:
            self._server = await asyncio.start_server(
                self._serve, host, port, ssl=context, limit=MAX_HEAD_BYTES
            )
        except OSError as error:
            raise SourceError(
                f"sources.http.listen_address {self.options.listen_address}: {error.strerror or error}"
            ) from None
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("http: listening on %s://%s:%d", "https" if context else "http", *self.address)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_connections()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        self.counts["connections_opened"] += 1
        peer = peer_host(writer.get_extra_info("peername"))
        try:
            while not self._closed:
                try:
                    async with asyncio.timeout(self.options.request_timeout_seconds):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    TimeoutError,
                    ConnectionError,
                ):
                    return  # closed between requests, or a head that never ends
                keep_alive = await self._request(head, reader, writer, peer)
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            pass
        finally:
            self._connections.pop(task, None)
            self.counts["connections_closed"] += 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str | None
    ) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        self.counts["requests"] += 1
        method, path, version, headers = _parse_head(head)
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        try:
            if method is None:
                raise _Reject(400, "malformed request head", close=True)
            if method == "GET" and path in ("/healthz", "/"):
                self._respond(writer, 200, {"status": "ok"}, keep_alive)
                return keep_alive
            if method != "POST":
                raise _Reject(405, f"{method} is not supported; POST kernel lines", close=True)
            self._authorize(headers)
            body = await self._read_body(reader, headers)
            status, answer = await self._accept(body, headers, peer)
        except _Reject as reject:
            self.counts[f"responses_{reject.status}"] += 1
            if reject.status >= 500 or reject.status == 429:
                log.warning("http: %s from %s: %s", reject.status, peer, reject)
            else:
                log.info("http: %s from %s: %s", reject.status, peer, reject)
            extra = (
                {"Retry-After": str(self.options.retry_after_seconds)} if reject.status in (429, 503) else {}
            )
            close = reject.close or not keep_alive
            self._respond(writer, reject.status, {"error": str(reject)}, not close, extra)
            return not close
        self.counts[f"responses_{status}"] += 1
        self._respond(writer, status, answer, keep_alive)
        return keep_alive

    def _authorize(self, headers: dict[str, str]) -> None:
        if self._token is None:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            raise _Reject(401, "missing or wrong bearer token")

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        limit = self.options.max_body_bytes
        async with asyncio.timeout(self.options.request_timeout_seconds):
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = await _read_chunked(reader, limit)
            else:
                length_text = headers.get("content-length")
                if length_text is None or not length_text.isdigit():
                    raise _Reject(411, "Content-Length or chunked transfer encoding required", close=True)
                length = int(length_text)
                if length > limit:
                    raise _Reject(
                        413, f"body of {length} bytes is over sources.http.max_body_bytes={limit}", close=True
                    )
                try:
                    body = await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    raise _Reject(400, "body shorter than its Content-Length", close=True) from None
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            return _inflate(body, limit, gzip=encoding != "deflate")
        if encoding != "identity":
            raise _Reject(415, f"Content-Encoding {encoding} is not supported (gzip, deflate or none)")
        return body

    async def _accept(
        self, body: bytes, headers: dict[str, str], peer: str | None
    ) -> tuple[int, dict[str, Any]]:
        if self.readiness is not None:
            ready, why = self.readiness()
            if not ready:
                self.counts["requests_refused_not_ready"] += 1
                raise _Reject(503, f"not accepting records: {why}")
        framer = self.envelope_framer(headers.get("x-oomstream-host") or peer)
        records, bad = self._frame_body(body, framer, peer)
        if len(records) > self.queue_free:
            self.counts["requests_backpressured"] += 1
            raise _Reject(
                429, f"record queue full ({self.queue_free} free, request has {len(records)}); retry later"
            )
        last = -1
        for record in records:
            await self.put(record)
            if record.position is not None and record.position.offset is not None:
                last = max(last, record.position.offset)
        timeout = self.options.ack_timeout_seconds
        if last >= 0 and not await self.wait_settled(last, timeout):
            self.counts["requests_not_durable_in_time"] += 1
            raise _Reject(503, f"records not durable within sources.http.ack_timeout_seconds={timeout:g}")
        return 200, {"records": len(records), "bad_lines": bad}

    def _frame_body(
        self, body: bytes, framer: EnvelopeFramer, peer: str | None
    ) -> tuple[list[KernelRecord], int]:
        records: list[KernelRecord] = []
        bad = 0
        stripped = body.lstrip()
        if stripped[:1] == b"[" and stripped[1:].lstrip()[:1] in (b"{", b"]"):
            # Fluent Bit `format json`: one array of records (a dmesg line starts "[  12.3]")
            try:
                items = orjson.loads(stripped)
            except orjson.JSONDecodeError as error:
                raise _Reject(400, f"body starts like a JSON array but is not one: {error}") from None
            if not isinstance(items, list):
                raise _Reject(400, "body is not a JSON array")
            for item in items:
                record = self._frame_one(
                    lambda item=item: framer.frame_object(item, self.next_position()), peer
                )
                if record is not None:
                    records.append(record)
            return records, bad
        for line in body.split(b"\n"):
            line = line.rstrip(b"\r")
            if not line.strip():
                continue
            if line[:1] == b"{":
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    bad += 1
                    self.counts["bad_json"] += 1
                    log.warning("http: %s sent a line that is not JSON: %.120r", peer, line)
                    continue
                record = self._frame_one(lambda obj=obj: framer.frame_object(obj, self.next_position()), peer)
            else:
                record = self._frame_one(
                    lambda line=line: framer.frame_line(line, self.next_position()), peer
                )
            if record is not None:
                records.append(record)
        return records, bad

    def _frame_one(self, frame: Any, peer: str | None) -> KernelRecord | None:
        try:
            record: KernelRecord | None = frame()
        except Exception:  # a parser bug must cost one line, not the request
            self.counts["frame_errors"] += 1
            log.exception("http: cannot frame a record from %s", peer)
            return None
        return record

    def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: dict[str, Any],
        keep_alive: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        payload = orjson.dumps(body) + b"\n"
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{name}: {value}" for name, value in (extra or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


def _parse_head(head: bytes) -> tuple[str | None, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None, "", "", {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1].split("?", 1)[0], parts[2], headers


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _Reject(400, "malformed chunk size", close=True) from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        if len(body) + size > limit:
            raise _Reject(413, f"chunked body over sources.http.max_body_bytes={limit}", close=True)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _inflate(body: bytes, limit: int, *, gzip: bool) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise _Reject(400, f"body is not valid {'gzip' if gzip else 'deflate'}: {error}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _Reject(413, f"inflated body is over sources.http.max_body_bytes={limit}")
    return out


COMPONENT = Component(
    options=HttpOptions,
    build=build,
    help="HTTP listener for log shippers (POST of NDJSON or plain lines, gzip, 2xx once durable)",
)
