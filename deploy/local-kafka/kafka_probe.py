#!/usr/bin/env python3
"""Readiness probe for kafka.sh (stdlib only, no kafka client needed).

Speaks the real Kafka wire protocol to ONE broker:
  1. ApiVersions v0 -> which Metadata versions the broker serves
  2. Metadata (highest non-flexible version 1..8 it supports) with an empty
     topic list -> the list of live (registered, unfenced) brokers.

Exit 0 when the broker answered and every id in --expect-ids is in the
broker list (and a controller id is known); exit 1 otherwise (reason on
stderr). With --print, prints "id host:port" per broker on stdout.

Usage: kafka_probe.py --bootstrap 127.0.0.1:9092 [--expect-ids 1,2,3]
                      [--timeout 2.0] [--print]
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

API_METADATA = 3
API_VERSIONS = 18


class ProbeError(Exception):
    pass


class Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ProbeError("truncated response")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def i16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        return self.take(n).decode("utf-8", "replace")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise ProbeError("connection closed by broker")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> Reader:
    client_id = b"oomstream-kafka-probe"
    # request header v1: api_key, api_version, correlation_id, client_id
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    reader = Reader(_recv_exact(sock, size))
    if reader.i32() != corr:  # response header v0: correlation_id
        raise ProbeError("correlation id mismatch")
    return reader


def probe(host: str, port: int, timeout: float) -> tuple[list[tuple[int, str, int]], int]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        r = _request(sock, API_VERSIONS, 0, 1, b"")
        err = r.i16()
        if err != 0:
            raise ProbeError(f"ApiVersions error code {err}")
        ranges = {}
        for _ in range(r.i32()):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            ranges[key] = (lo, hi)
        if API_METADATA not in ranges:
            raise ProbeError("broker does not advertise Metadata API")
        lo, hi = ranges[API_METADATA]
        version = min(hi, 8)  # v9+ are flexible (tagged fields); not needed here
        if version < max(lo, 1):
            raise ProbeError(f"no supported Metadata version (broker: {lo}..{hi})")

        body = struct.pack(">i", 0)  # topics: empty array -> no topic metadata
        if version >= 4:
            body += b"\x00"  # allow_auto_topic_creation = false
        if version >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        r = _request(sock, API_METADATA, version, 2, body)
        if version >= 3:
            r.i32()  # throttle_time_ms
        brokers = []
        for _ in range(r.i32()):
            node_id = r.i32()
            bhost = r.string() or ""
            bport = r.i32()
            r.string()  # rack (v1+)
            brokers.append((node_id, bhost, bport))
        if version >= 2:
            r.string()  # cluster_id
        controller_id = r.i32()
        return brokers, controller_id


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="host:port of ONE broker")
    ap.add_argument("--expect-ids", default="", help="comma list of broker ids that must be live")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--print", action="store_true", dest="do_print")
    args = ap.parse_args(argv)

    host, _, port_s = args.bootstrap.rpartition(":")
    expect = {int(x) for x in args.expect_ids.split(",") if x.strip()}
    try:
        brokers, controller_id = probe(host or "127.0.0.1", int(port_s), args.timeout)
    except (OSError, ProbeError, struct.error) as exc:
        print(f"probe {args.bootstrap}: {exc}", file=sys.stderr)
        return 1
    if args.do_print:
        for node_id, bhost, bport in sorted(brokers):
            print(f"{node_id} {bhost}:{bport}")
    live = {b[0] for b in brokers}
    missing = expect - live
    if missing:
        print(
            f"probe {args.bootstrap}: brokers {sorted(missing)} not live yet (live: {sorted(live)})",
            file=sys.stderr,
        )
        return 1
    if controller_id < 0:
        print(f"probe {args.bootstrap}: no controller yet", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
