"""The HTTP listener in a pipeline: documented shipper envelopes in, 2xx only once durable,
backpressure, limits and authentication, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from shippers.envelopes import BUILDERS, dmesg_lines
from test_listener_syslog import TlsSet, needs_openssl
from test_pipeline import HoldingSink

from streamer.inputs import events_from_bytes
from streamer.pipeline import Pipeline, PipelineSettings
from streamer.sources.http import HttpOptions, HttpSource

SAMPLE = Path(__file__).parents[2] / "streamer" / "samples" / "6.18-pod-limit.dmesg"
LINES = dmesg_lines(SAMPLE.read_text())
VICTIM = 3465  # the sample's kill


@contextlib.asynccontextmanager
async def running(
    options: HttpOptions, hold: set[int] | None = None
) -> AsyncIterator[tuple[HttpSource, HoldingSink]]:
    source = HttpSource(options)
    await source.start()
    pipeline: Pipeline
    sink = HoldingSink(hold or set(), on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline([source], sink, settings=PipelineSettings(tick_seconds=0.05, linger_seconds=0.2))
    task = asyncio.create_task(pipeline.run())
    try:
        yield source, sink
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 10)


async def post(
    source: HttpSource, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, object]]:
    assert source.address is not None
    reader, writer = await asyncio.open_connection(*source.address)
    head = {"Content-Length": str(len(body)), "Content-Type": "application/x-ndjson", "Connection": "close"}
    head.update(headers or {})
    writer.write(
        (
            "POST /v1/lines HTTP/1.1\r\nHost: x\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in head.items())
            + "\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    header_text, _, payload = rest.partition(b"\r\n\r\n")
    response_headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_text.decode().split("\r\n"))
    }
    return int(status_line.split()[1]), response_headers, orjson.loads(payload) if payload else {}


def ndjson(shape: str, host: str = "node-9") -> bytes:
    return b"".join(orjson.dumps(BUILDERS[shape](line, seq, host)) + b"\n" for seq, line in enumerate(LINES))


OPTIONS = HttpOptions(listen_address="127.0.0.1:0", ack_timeout_seconds=5.0)


@pytest.mark.parametrize("shape", sorted(BUILDERS))
async def test_each_documented_envelope_becomes_the_kill_and_200_follows_delivery(shape: str) -> None:
    async with running(OPTIONS) as (source, sink):
        status, _, answer = await post(source, gzip.compress(ndjson(shape)), {"Content-Encoding": "gzip"})
        # 200 comes only after the sink acknowledged the event.
        assert status == 200, answer
        assert [e.victim.pid for e in sink.delivered if e.victim] == [VICTIM]
    assert answer["records"] == len(LINES)
    assert sink.delivered[0].host == "node-9"
    expected = events_from_bytes(SAMPLE.read_bytes())[0]
    assert sink.delivered[0].cgroup.pod_uid == expected.cgroup.pod_uid


async def test_plain_lines_and_a_fluent_bit_json_array() -> None:
    async with running(OPTIONS) as (source, sink):
        status, _, _ = await post(source, "\n".join(LINES).encode(), {"X-Oomstream-Host": "plain-host"})
        assert status == 200
        array = orjson.dumps([BUILDERS["fluentbit-kmsg"](line, i, "fb-host") for i, line in enumerate(LINES)])
        status, _, answer = await post(
            source, array.replace(b'"3465', b'"3466').replace(b" 3465 ", b" 3466 ")
        )
        assert status == 200, answer
    assert {e.host for e in sink.delivered} == {"plain-host", "fb-host"}


async def test_no_2xx_before_the_records_are_durable() -> None:
    options = HttpOptions(listen_address="127.0.0.1:0", ack_timeout_seconds=1.0, retry_after_seconds=7)
    async with running(options, hold={VICTIM}) as (source, sink):
        status, headers, answer = await post(source, ndjson("vector-file"))
    assert status == 503, answer
    assert headers["retry-after"] == "7"
    assert sink.delivered == []


async def test_a_full_queue_answers_429_and_takes_nothing() -> None:
    options = HttpOptions(listen_address="127.0.0.1:0", queue_records=10)
    async with running(options) as (source, _sink):
        status, headers, _ = await post(source, ndjson("vector-file"))
        assert status == 429 and headers["retry-after"] == "5"
        assert source.counts["records"] == 0


async def test_limits_bad_bodies_and_bad_lines() -> None:
    options = HttpOptions(listen_address="127.0.0.1:0", max_body_bytes=4096)
    async with running(options) as (source, _sink):
        assert (await post(source, b"x" * 5000))[0] == 413
        assert (await post(source, gzip.compress(b"x\n" * 10000), {"Content-Encoding": "gzip"}))[0] == 413
        assert (await post(source, b"not gzip", {"Content-Encoding": "gzip"}))[0] == 400
        assert (await post(source, b'[{"a": 2', {}))[0] == 400
        status, _, answer = await post(
            source, b'{"broken\n' + b"\n".join(line.encode() for line in LINES[:3])
        )
        assert status == 200 and answer == {"records": 3, "bad_lines": 1}
    assert source.counts["bad_json"] == 1


async def test_bearer_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    options = HttpOptions(listen_address="127.0.0.1:0", bearer_token_path=str(token))
    async with running(options) as (source, _sink):
        assert (await post(source, LINES[0].encode()))[0] == 401
        assert (await post(source, LINES[0].encode(), {"Authorization": "Bearer wrong"}))[0] == 401
        assert (await post(source, LINES[0].encode(), {"Authorization": "Bearer s3cret"}))[0] == 200


@needs_openssl
async def test_https_with_client_certificates(tmp_path: Path) -> None:
    tls = TlsSet(tmp_path)
    options = HttpOptions(listen_address="127.0.0.1:0", **tls.server_options())
    async with running(options) as (source, sink):
        assert source.address is not None
        anonymous = tls.client(certificate=False)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(*source.address, ssl=anonymous)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            if not await reader.read():
                raise ConnectionError("closed without an answer")
        reader, writer = await asyncio.open_connection(*source.address, ssl=tls.client(certificate=True))
        body = ndjson("vector-file")
        writer.write(
            f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        assert answer.startswith(b"HTTP/1.1 200")
    assert [e.victim.pid for e in sink.delivered if e.victim] == [VICTIM]


async def test_not_ready_answers_503_and_takes_nothing() -> None:
    async with running(OPTIONS) as (source, _sink):
        source.readiness = lambda: (False, "sink disconnected and spool 95% full")
        status, headers, answer = await post(source, ndjson("vector-file"))
        assert status == 503 and headers["retry-after"] == "5"
        assert "spool 95% full" in str(answer["error"])
        assert source.counts["records"] == 0
