"""Metrics registry and HTTP endpoint (real sockets, real HTTP client), and the logging setup."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from parsers.events import CgroupInfo, OomEvent, PodMetadata, Source
from streamer.checkpoint import CheckpointStore
from streamer.logging_setup import JsonFormatter, RateLimiter, RateLimitFilter, TextFormatter, setup_logging
from streamer.metrics import Metrics, MetricsServer, sink_readiness
from streamer.spool import Spool


def event(
    *, constraint: str | None = "CONSTRAINT_MEMCG", partial: bool = False, namespace: str | None = None
) -> OomEvent:
    return OomEvent(
        event_id="e1",
        time=None,
        time_source=None,
        kernel_time=1.0,
        host="node",
        boot_id=None,
        victim=None,
        trigger=None,
        constraint=constraint,
        cgroup=CgroupInfo(limit_scope="container"),
        memcg=None,
        tasks=None,
        tasks_total=None,
        group_kill=False,
        partial=partial,
        partial_reason="timeout" if partial else None,
        kill_message=None,
        reaped=None,
        memcg_stats=None,
        mem_info=None,
        source=Source(kind="kmsg", format="kmsg", position=None),
        kubernetes=PodMetadata(namespace=namespace) if namespace else None,
    )


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# -- registry --------------------------------------------------------------------------------------


def test_event_metrics() -> None:
    metrics = Metrics()
    metrics.observe_event(event())
    metrics.observe_event(event(partial=True, namespace="shop"))
    metrics.observe_event(event(constraint=None))
    got = samples(metrics)
    base = (("constraint", "CONSTRAINT_MEMCG"), ("limit_scope", "container"))
    assert got[("oomstream_oom_events_total", (*base, ("namespace", "")))] == 1
    assert got[("oomstream_oom_events_total", (*base, ("namespace", "shop")))] == 1
    unknown = (("constraint", "unknown"), ("limit_scope", "container"), ("namespace", ""))
    assert got[("oomstream_oom_events_total", unknown)] == 1
    assert got[("oomstream_partial_reports_total", (("reason", "timeout"),))] == 1
    assert got[("oomstream_last_event_timestamp_seconds", ())] > 1e9


def test_tallies_are_read_at_scrape_time(tmp_path: Path) -> None:
    metrics = Metrics()
    from parsers.framing import FRAMER_SKIPS, RECORD_FORMATS
    from streamer.sources.files import FILES_TELEMETRY
    from streamer.sources.kmsg import KMSG_TELEMETRY

    kmsg = KMSG_TELEMETRY.tally()
    formats_a = RECORD_FORMATS.tally()
    formats_b = RECORD_FORMATS.tally()
    skipped = FRAMER_SKIPS.tally()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=10)
    metrics.track_source("kmsg", kmsg)
    metrics.track_formats(formats_a)
    metrics.track_formats(formats_b)
    metrics.track_formats(formats_b)  # the same mapping twice is counted once
    metrics.track_parse_errors(skipped)
    metrics.track_queue("records", queue)
    metrics.track_queue("events", lambda: 3)
    kmsg.update(lines=1000, records=990, lost=7, untrusted=2, epipe=3)
    files = FILES_TELEMETRY.tally([("lines", 5)])
    metrics.track_source("file:/x", files)
    formats_a["kmsg"] += 5
    formats_b["kmsg"] += 2
    formats_b["syslog-3164"] += 1
    skipped["not_kernel"] += 4
    queue.put_nowait(1)
    with (
        Spool(str(tmp_path / "spool"), 1 << 20, 4096) as spool,
        CheckpointStore(str(tmp_path / "state")) as store,
    ):
        spool.append(None, b"x" * 100)
        store.save("kmsg", {"seq": 1})
        metrics.track_spool(spool)
        metrics.track_checkpoints(store)
        got = samples(metrics)
    source = (("source", "kmsg"),)
    assert got[("oomstream_source_lines_read_total", source)] == 1000
    assert got[("oomstream_source_records_total", source)] == 990
    assert got[("oomstream_source_lost_records_total", source)] == 7
    assert got[("oomstream_untrusted_records_total", source)] == 2
    assert got[("oomstream_source_restarts_total", source)] == 0
    assert got[("oomstream_source_counts_total", (("name", "epipe"), ("source", "kmsg")))] == 3
    assert got[("oomstream_source_lines_read_total", (("source", "file:/x"),))] == 5
    assert got[("oomstream_records_total", (("format", "kmsg"),))] == 7
    assert got[("oomstream_records_total", (("format", "syslog-3164"),))] == 1
    assert got[("oomstream_parse_errors_total", (("reason", "not_kernel"),))] == 4
    assert got[("oomstream_parse_errors_total", (("reason", "empty"),))] == 0  # declared: visible from zero
    assert got[("oomstream_queue_depth", (("queue", "records"),))] == 1
    assert got[("oomstream_queue_capacity", (("queue", "records"),))] == 10
    assert got[("oomstream_queue_depth", (("queue", "events"),))] == 3
    assert got[("oomstream_spool_events", ())] == 1
    assert got[("oomstream_spool_bytes", ())] > 100
    assert got[("oomstream_spool_max_bytes", ())] == 1 << 20
    assert got[("oomstream_spool_dropped_events_total", ())] == 0
    assert got[("oomstream_checkpoint_saves_total", ())] == 1
    assert got[("oomstream_checkpoint_corrupt_total", ())] == 0


def test_sink_metrics_share_the_registry() -> None:
    metrics = Metrics()
    metrics.sink.events_sent.labels("kafka", "oomstream.events.v1").inc()
    metrics.sink.produce_latency.labels("kafka").observe(0.02)
    got = samples(metrics)
    assert (
        got[("oomstream_sink_events_sent_total", (("sink", "kafka"), ("topic", "oomstream.events.v1")))] == 1
    )
    assert got[("oomstream_sink_produce_latency_seconds_count", (("sink", "kafka"),))] == 1


def test_every_name_is_prefixed_and_instances_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.observe_event(event())
    for name, _labels in samples(first):
        assert name.startswith("oomstream_"), name
    assert ("oomstream_oom_events_total", ()) not in samples(second)
    assert not any(name == "oomstream_oom_events_total" for name, _ in samples(second))


def test_sink_readiness(tmp_path: Path) -> None:
    connected = [True]
    assert sink_readiness(lambda: connected[0])() == (True, "sink connected")
    connected[0] = False
    assert sink_readiness(lambda: connected[0])() == (False, "sink disconnected and no spool configured")
    with Spool(str(tmp_path), 8192, 4096) as spool:
        check = sink_readiness(lambda: connected[0], spool, spool_fill_limit=0.4)
        ready, reason = check()
        assert ready and reason.startswith("sink disconnected; spooling (0 events")
        for _ in range(60):
            spool.append(None, b"x" * 100)
        ready, reason = check()
        assert not ready and "full" in reason


# -- HTTP endpoint ---------------------------------------------------------------------------------


def fetch(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def get(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, url, method, headers)


async def test_serves_metrics_health_and_readiness() -> None:
    metrics = Metrics()
    metrics.observe_event(event())
    state = {"ready": (False, "sink disconnected and spool 95% full")}
    async with MetricsServer(metrics, "127.0.0.1:0", lambda: state["ready"]) as server:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"

        status, headers, body = await get(f"{base}/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b'oomstream_oom_events_total{constraint="CONSTRAINT_MEMCG"' in body
        assert b"oomstream_build_info{" in body

        status, _, body = await get(f"{base}/healthz")
        assert (status, body) == (200, b"ok\n")

        status, _, body = await get(f"{base}/readyz")
        assert (status, body) == (503, b"sink disconnected and spool 95% full\n")
        assert samples(metrics)[("oomstream_ready", ())] == 0

        state["ready"] = (True, "sink connected")
        status, _, body = await get(f"{base}/readyz?verbose=1")
        assert (status, body) == (200, b"sink connected\n")
        assert samples(metrics)[("oomstream_ready", ())] == 1


async def test_http_details() -> None:
    metrics = Metrics()
    async with MetricsServer(metrics, "127.0.0.1:0") as server:
        base = f"http://127.0.0.1:{server.port}"
        assert (await get(f"{base}/readyz"))[0] == 200  # no readiness check: ready
        assert (await get(f"{base}/nope"))[0] == 404
        status, headers, _ = await get(f"{base}/metrics", "POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        status, headers, body = await get(f"{base}/metrics", "HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
        status, headers, body = await get(f"{base}/metrics", **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert b"oomstream_ready" in gzip.decompress(body)
        status, headers, body = await get(
            f"{base}/metrics", Accept="application/openmetrics-text; version=1.0.0"
        )
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")

        # A malformed request gets a 400; a silent client is dropped, not waited on forever.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()


async def test_readiness_check_that_raises_is_not_ready() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("sink state unknown")

    async with MetricsServer(Metrics(), "127.0.0.1:0", broken) as server:
        status, _, body = await get(f"http://127.0.0.1:{server.port}/readyz")
    assert status == 503 and b"readiness check failed: sink state unknown" in body


async def test_silent_client_times_out() -> None:
    async with MetricsServer(Metrics(), "127.0.0.1:0", request_timeout_seconds=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_port_in_use_fails_at_start() -> None:
    async with MetricsServer(Metrics(), "127.0.0.1:0") as first:
        with pytest.raises(OSError):
            async with MetricsServer(Metrics(), f"127.0.0.1:{first.port}"):
                pass


# -- logging ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream, rate_limit_seconds=0)
    log = logging.getLogger("oomstream.test")
    log.debug("not shown")
    log.info("sent %d events", 3, extra={"topic": "t", "path": Path("/x"), "n": {1: 2}})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["level"] == "INFO" and first["logger"] == "oomstream.test"
    assert first["message"] == "sent 3 events"
    assert first["topic"] == "t" and first["path"] == "PosixPath('/x')" and first["n"] == {"1": 2}
    assert first["time"].endswith("Z") and len(first["time"]) == len("2025-01-01T00:00:00.000Z")
    assert "ValueError: boom" in lines[1]["exception"]


def test_text_lines(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging("debug", "text", stream=stream)
    logging.getLogger("oomstream.x").warning("spool full", extra={"dropped": 3})
    line = stream.getvalue()
    assert " WARNING oomstream.x: spool full dropped=3" in line


def test_setup_logging_replaces_its_own_handler(restore_root_logger: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first)
    setup_logging(stream=second)
    logging.getLogger("oomstream.x").warning("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1


def test_rate_limiter_counts_what_it_holds_back() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock, max_keys=2)
    assert limiter.check("a") == 0
    assert limiter.check("a") is None
    assert limiter.check("a") is None
    clock.now += 10
    assert limiter.check("a") == 2
    assert limiter.suppressed_total == 2
    limiter.check("b")
    limiter.check("c")  # evicts "a": bounded memory
    assert limiter.check("a") == 0


def test_rate_limit_filter(restore_root_logger: None) -> None:
    clock = Clock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    rate_filter = RateLimitFilter(30, clock=clock)
    handler.addFilter(rate_filter)
    log = logging.getLogger("oomstream.ratelimit")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        for i in range(5):
            log.warning("send to %s failed", f"broker-{i}")  # one template: one key
        log.info("info is never limited")
        log.info("info is never limited")
        log.error("exempt", extra={"rate_limit": False})
        log.error("exempt", extra={"rate_limit": False})
        log.error("own key", extra={"rate_key": "k1"})
        log.error("own key, same key", extra={"rate_key": "k1"})
        clock.now += 31
        log.warning("send to %s failed", "broker-9")
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "send to broker-0 failed",
        "info is never limited",
        "info is never limited",
        "exempt",
        "exempt",
        "own key",
        "send to broker-9 failed (suppressed 4 similar in the last 30s)",
    ]


def test_json_carries_the_suppressed_count() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "again", None, None)
    record.suppressed = 7
    record.suppressed_interval_seconds = 60.0
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "again (suppressed 7 similar in the last 60s)"
    assert entry["suppressed"] == 7


# -- bounds (README "Bounds and what happens at them") ----------------------------------------------


def test_every_bound_is_exported_from_zero_and_logged_once_per_growth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamer.metrics import BOUNDS
    from streamer.pipeline import PIPELINE_TELEMETRY
    from streamer.pipeline.signals import LEDGER_TELEMETRY
    from streamer.sources.files import FILES_TELEMETRY

    metrics = Metrics()
    ledger = LEDGER_TELEMETRY.tally()
    source = FILES_TELEMETRY.tally()
    pipeline = PIPELINE_TELEMETRY.tally()
    metrics.track_bounds(ledger)
    metrics.track_bounds(source)
    metrics.track_pipeline(pipeline)
    got = samples(metrics)
    declared = (
        *ledger.telemetry.bounds.values(),
        *source.telemetry.bounds.values(),
        *pipeline.telemetry.bounds.values(),
    )
    assert len(declared) == 5
    for name in (*declared, *BOUNDS):
        assert name in BOUNDS, name  # every bound a component counts is documented
        assert got[("oomstream_bound_hits_total", (("bound", name),))] == 0, name
    assert got[("oomstream_k8s_skipped_occurrences_total", ())] == 0

    ledger["ids_evicted"] += 3
    source["long_lines_truncated"] += 2
    pipeline["occurrences_skipped"] += 974
    got = samples(metrics)
    assert got[("oomstream_bound_hits_total", (("bound", "signal_ledger_ids"),))] == 3
    assert got[("oomstream_bound_hits_total", (("bound", "long_lines"),))] == 2
    assert got[("oomstream_bound_hits_total", (("bound", "k8s_backfill_occurrences"),))] == 974
    assert got[("oomstream_k8s_skipped_occurrences_total", ())] == 974
    assert got[("oomstream_pipeline_total", (("name", "occurrences_skipped"),))] == 974

    with caplog.at_level(logging.WARNING, logger="oomstream.metrics"):
        metrics.log_bound_hits()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 3, lines
        assert any("signal_ledger_ids reached 3" in m and "kubernetes.max_ledger_signals" in m for m in lines)
        assert any("k8s_backfill_occurrences reached 974" in m for m in lines)
        caplog.clear()
        metrics.log_bound_hits()  # nothing grew: nothing said
        assert caplog.records == []
        source["long_lines_truncated"] += 1
        metrics.log_bound_hits()
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [
            "bound long_lines reached 1 time(s) since the last report"
        ]


def test_a_bound_must_be_documented_and_an_undeclared_key_is_not_exposed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from parsers.telemetry import Count, Telemetry

    metrics = Metrics()
    typo = Telemetry("demo", (Count("dropped", "d", bound="demo_bund"),)).tally()
    with pytest.raises(ValueError, match="demo: key 'dropped' reports bound 'demo_bund'"):
        metrics.track_bounds(typo)
    tally = Telemetry(
        "demo", (Count("lines", "l", metric="oomstream_source_lines_read"), Count("x", "x"))
    ).tally()
    metrics.track_source("demo", tally)
    tally["lines"] += 2
    tally["set_directly"] = 5  # bypasses the tally's check
    with caplog.at_level(logging.ERROR, logger="oomstream.metrics"):
        got = samples(metrics)
    assert got[("oomstream_source_lines_read_total", (("source", "demo"),))] == 2
    assert got[("oomstream_source_counts_total", (("name", "x"), ("source", "demo")))] == 0  # declared: shown
    assert not [key for key in got if ("name", "set_directly") in key[1]]
    assert "demo counted 'set_directly', which its Telemetry does not declare" in caplog.text


def test_dead_letter_cuts_are_counted() -> None:
    from streamer.sinks.base import DEAD_LETTER_TELEMETRY, DeadLetter, dead_letter_to_json

    letter = DeadLetter.from_event(event(), "partial_report")
    letter = dataclasses.replace(letter, raw_lines=tuple(f"line {i} " + "x" * 200 for i in range(50)))
    counts = DEAD_LETTER_TELEMETRY.tally()
    data = json.loads(dead_letter_to_json(letter, max_bytes=3000, counts=counts))
    assert data["raw_lines_truncated"] is True and data["event"] is None
    assert counts["dead_letter_events_left_out"] == 1
    assert counts["dead_letter_raw_lines_cut"] == 50 - len(data["raw_lines"]) > 0


def test_task_rows_left_out_are_counted() -> None:
    from parsers.framing import Framer
    from parsers.oom import Assembler
    from parsers.scan import LogScanner

    path = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "3.10-rhel7-global-meminfo.log"
    scanner = LogScanner(Framer("auto", year=2026, tz=None), Assembler(max_tasks=1))
    events = scanner.feed(path.read_bytes()) + scanner.finish() + scanner.assembler.flush()
    with_tables = [e for e in events if e.tasks_total]
    assert with_tables and all(len(e.tasks or []) == 1 for e in with_tables)
    cut = sum((e.tasks_total or 0) - 1 for e in with_tables)
    assert cut > 0 and scanner.assembler.counts["task_rows_not_kept"] == cut
