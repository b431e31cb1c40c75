"""The syslog listener in a pipeline: framing over real sockets, per-host assembly, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_pipeline import HoldingSink

from streamer.pipeline import Pipeline, PipelineSettings
from streamer.sources.syslog import SyslogOptions, SyslogSource


def report_5424(host: str, pid: int, stamp: str = "2026-12-04T05:00:00.000001Z") -> list[bytes]:
    """A report as rsyslog's imkmsg relays it: RFC 5424, no kernel timestamp in the text."""
    body = [
        "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "memory: usage 1024kB, limit 1024kB, failcnt 1",
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=app,pid={pid},uid=0",
        f"Memory cgroup out of memory: Killed process {pid} (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]
    return [f"<6>1 {stamp} {host} kernel - - - {line}".encode() for line in body]


def octet(frame: bytes) -> bytes:
    return str(len(frame)).encode() + b" " + frame


@contextlib.asynccontextmanager
async def running(options: SyslogOptions) -> AsyncIterator[tuple[SyslogSource, HoldingSink, Pipeline]]:
    source = SyslogSource(options)
    await source.start()
    pipeline: Pipeline
    sink = HoldingSink(set(), on_delivery=lambda result: pipeline.on_delivery(result))
    pipeline = Pipeline(
        [source],
        sink,
        settings=PipelineSettings(tick_seconds=0.05, linger_seconds=0.2, report_timeout_seconds=1.0),
    )
    task = asyncio.create_task(pipeline.run())
    try:
        yield source, sink, pipeline
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 10)


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


OPTIONS = SyslogOptions(tcp_listen_address="127.0.0.1:0", udp_listen_address="127.0.0.1:0")


async def test_interleaved_hosts_are_assembled_apart_and_released_while_running() -> None:
    async with running(OPTIONS) as (source, sink, _):
        assert source.tcp_address is not None
        _, writer = await asyncio.open_connection(*source.tcp_address)
        a, b = report_5424("node-a", 101), report_5424("node-b", 202)
        for frame_a, frame_b in zip(a, b, strict=True):  # two hosts' reports line by line
            writer.write(octet(frame_a) + frame_b + b"\n")
        await writer.drain()
        # Released by the linger on tick time (no kernel time in these lines), not by a stop.
        await wait_for(lambda: len(sink.delivered) == 2)
        writer.close()
    assert {(e.host, e.victim.pid) for e in sink.delivered if e.victim} == {("node-a", 101), ("node-b", 202)}
    assert all(not e.partial for e in sink.delivered)
    assert source.records_by_host == {"node-a": 4, "node-b": 4}


async def test_garbage_and_oversized_frames_cost_only_themselves() -> None:
    options = SyslogOptions(tcp_listen_address="127.0.0.1:0", max_frame_bytes=512)
    async with running(options) as (source, sink, _):
        assert source.tcp_address is not None
        _, writer = await asyncio.open_connection(*source.tcp_address)
        good = report_5424("node-c", 303)
        writer.write(octet(good[0]) + b"\xff\xfe{not json\n" + octet(b"x" * 2000) + b"y" * 3000 + b"\n")
        writer.write(b"".join(octet(frame) for frame in good[1:]))
        await writer.drain()
        await wait_for(lambda: len(sink.delivered) == 1)
        writer.close()
    assert sink.delivered[0].victim is not None and sink.delivered[0].victim.pid == 303
    assert source.counts["oversized_frames"] == 2


async def test_udp_datagrams_and_untrusted_senders() -> None:
    async with running(OPTIONS) as (source, sink, _):
        assert source.udp_address is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=source.udp_address
        )
        for frame in report_5424("node-d", 404):
            transport.sendto(frame)
        # A user-space process claiming to be the kernel (facility user) is counted, not assembled.
        for frame in report_5424("node-e", 505):
            transport.sendto(frame.replace(b"<6>", b"<14>", 1))
        await wait_for(lambda: len(sink.delivered) == 1)
        transport.close()
    assert [e.host for e in sink.delivered] == ["node-d"]
    assert source.records_by_host["node-e"] == 4  # received and counted, never an event


async def test_a_port_in_use_is_a_clear_error() -> None:
    from streamer.sources.base import SourceError

    first = SyslogSource(OPTIONS)
    await first.start()
    try:
        assert first.tcp_address is not None
        taken = SyslogOptions(tcp_listen_address=f"127.0.0.1:{first.tcp_address[1]}")
        with pytest.raises(SourceError, match=r"syslog\.tcp_listen_address"):
            await SyslogSource(taken).start()
    finally:
        await first.aclose()


def make_ca_and_cert(tmp: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca`` (or self-signed), made with the openssl tool."""
    key, cert = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509" if ca is None else "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-subj", f"/CN={name}", "-days", "2", "-out", str(cert if ca is None else tmp / f"{name}.csr"),
         *(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE"]
           if ca is None else [])],
        check=True, capture_output=True,
    )  # fmt: skip
    if ca is not None:
        ext = tmp / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        subprocess.run(
            ["openssl", "x509", "-req", "-in", str(tmp / f"{name}.csr"), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
             "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext)],
            check=True, capture_output=True,
        )  # fmt: skip
    return key, cert


@dataclass(frozen=True)
class TlsSet:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA."""

    tmp: Path

    def __post_init__(self) -> None:
        ca = make_ca_and_cert(self.tmp, "ca")
        make_ca_and_cert(self.tmp, "server", ca)
        make_ca_and_cert(self.tmp, "client", ca)

    def server_options(self) -> dict[str, str]:
        """The listener options that require client certificates (the same names for both)."""
        t = self.tmp
        return {"tls_cert_path": str(t / "server.crt"), "tls_key_path": str(t / "server.key"),
                "tls_client_ca_path": str(t / "ca.crt")}  # fmt: skip

    def client(self, *, certificate: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.tmp / "ca.crt"))
        if certificate:
            context.load_cert_chain(str(self.tmp / "client.crt"), str(self.tmp / "client.key"))
        return context


needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl tool is not installed"
)


@needs_openssl
async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    tls = TlsSet(tmp_path)
    options = SyslogOptions(tcp_listen_address="127.0.0.1:0", **tls.server_options())
    async with running(options) as (source, sink, _):
        assert source.tcp_address is not None
        trusted, anonymous = tls.client(certificate=True), tls.client(certificate=False)
        # Without a client certificate the handshake (or the first read) fails; nothing arrives.
        with contextlib.suppress(ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            reader, writer = await asyncio.open_connection(*source.tcp_address, ssl=anonymous)
            writer.write(b"".join(octet(frame) for frame in report_5424("anon", 1)))
            await writer.drain()
            await reader.read()
        _, writer = await asyncio.open_connection(*source.tcp_address, ssl=trusted)
        writer.write(b"".join(octet(frame) for frame in report_5424("tls-node", 606)))
        await writer.drain()
        await wait_for(lambda: len(sink.delivered) == 1)
        writer.close()
    assert [(e.host, e.victim.pid) for e in sink.delivered if e.victim] == [("tls-node", 606)]
