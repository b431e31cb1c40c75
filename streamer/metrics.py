"""Prometheus metrics of the service, and the HTTP endpoint serving /metrics, /healthz and /readyz.

Two kinds of metrics:

* Per-event ones (OOM events, partial reports, last event time) are ordinary prometheus_client
  counters/gauges, updated through ``Metrics.observe_event``: events are rare, the lock is free.
* Per-line and per-record tallies are NOT incremented here: a prometheus counter costs about a
  microsecond per ``inc()``, as much as framing a record. Each component declares what it counts
  beside its code (a ``parsers.telemetry.Telemetry``: key, help, its own metric or the size bound
  it reports) and counts into the ``Tally`` that declaration makes; ``Metrics.track_*`` registers
  the tally, and its series come from the declaration (every declared key visible, zero until
  counted; a key no declaration holds is refused by the tally, never exposed under a catch-all).
  Tallies are read only when Prometheus scrapes. Queue depths and spool sizes are read the same way.

The sink metrics (``oomstream_sink_*``: events sent/failed/dead-lettered, produce latency, in
flight) are defined by ``streamer.sinks.base.SinkMetrics``; ``Metrics.sink`` is that object on the
same registry, so sinks built with ``registry=metrics.registry`` report into one endpoint.

The HTTP server is a minimal HTTP/1.1 responder on ``asyncio.start_server`` (one request per
connection, GET/HEAD only), running on the service's event loop: collectors then read the
pipeline's counters from the thread that writes them, and no thread or extra dependency is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol, Self

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from parsers.events import AnyEvent, IncidentEvent, K8sEvent
from parsers.telemetry import Tally
from streamer.checkpoint import CHECKPOINT_TELEMETRY
from streamer.config import split_host_port
from streamer.sinks.base import SinkMetrics, sink_metrics
from streamer.sources.base import SOURCE_TELEMETRY
from streamer.spool import SpoolStats

log = logging.getLogger("oomstream.metrics")

# Source tally key -> (metric name, help), from the keys every source declares
# (streamer.sources.base.SOURCE_TELEMETRY); a source's other keys are series of
# oomstream_source_counts_total{source,name}.
SOURCE_COUNTS: dict[str, tuple[str, str]] = {c.key: (c.metric, c.help) for c in SOURCE_TELEMETRY if c.metric}
CHECKPOINT_COUNTS: dict[str, tuple[str, str]] = {
    c.key: (c.metric, c.help) for c in CHECKPOINT_TELEMETRY if c.metric
}
# (kind, name, help, SpoolStats field or "max_bytes") of the spool metrics, read at scrape time.
SPOOL_FAMILIES: tuple[tuple[Callable[..., Metric], str, str, str], ...] = (
    (GaugeMetricFamily, "oomstream_spool_bytes", "Bytes of spool segment files on disk", "bytes"),
    (GaugeMetricFamily, "oomstream_spool_max_bytes", "Spool size bound", "max_bytes"),
    (GaugeMetricFamily, "oomstream_spool_events", "Events in the spool, not yet acknowledged", "events"),
    (GaugeMetricFamily, "oomstream_spool_segments", "Spool segment files", "segments"),
    (
        CounterMetricFamily,
        "oomstream_spool_appended_events",
        "Events written to the spool",
        "appended_events",
    ),
    (
        CounterMetricFamily,
        "oomstream_spool_acked_events",
        "Spooled events acknowledged by the sink",
        "acked_events",
    ),
    (
        CounterMetricFamily,
        "oomstream_spool_dropped_events",
        "Unsent events deleted because the spool was full (oldest first)",
        "dropped_events",
    ),
    (
        CounterMetricFamily,
        "oomstream_spool_rejected_events",
        "Events too large for the spool, refused",
        "rejected_events",
    ),
    (
        CounterMetricFamily,
        "oomstream_spool_torn_records",
        "Torn or corrupt records cut off when the spool was opened",
        "torn_records",
    ),
    (
        CounterMetricFamily,
        "oomstream_spool_write_errors",
        "Spool appends that failed (disk full, I/O error); those events stay owed, not spooled",
        "write_errors",
    ),
)


# Where a size bound drops, forgets or cuts something (README "Bounds and what happens at them"):
# bound name -> (what happens there, the option that sets it). Components count in their own tallies
# and declare which key reports which bound (``Count(..., bound=...)``); ``Metrics.track_bounds``
# exposes them in oomstream_bound_hits_total{bound}, and ``Metrics.log_bound_hits`` says in one line
# per bound what grew since its last call.
BOUND_METRIC = "oomstream_bound_hits"
BOUND_HELP = "Things a size bound dropped, forgot or cut (one per item), by bound; see README 'Bounds'"
BOUND_LOG_INTERVAL_SECONDS = 60.0
BOUNDS: dict[str, tuple[str, str]] = {
    "k8s_backfill_occurrences": (
        "occurrences of a jumping Event count declared in skipped_occurrences, not emitted one by one",
        "kubernetes.max_backfill_occurrences",
    ),
    "k8s_tracker_keys": (
        "Kubernetes objects forgotten by the signal tracker (oldest first); seen again, the signal "
        "ledger recognizes what they give",
        "fixed: 50,000 objects",
    ),
    "signal_ledger_ids": (
        "published signal ids forgotten (oldest first); such a signal relisted after a restart is "
        "published again",
        "kubernetes.max_ledger_signals",
    ),
    "signal_ledger_objects": (
        "Event objects' published high-water marks forgotten (oldest first); after a restart their "
        "occurrences may be published or declared again",
        "kubernetes.max_ledger_signals",
    ),
    "signal_ledger_age": ("signal ledger entries older than 7 days dropped", "fixed: 7 days"),
    "task_table_rows": (
        "task table rows left out of events (the largest RSS are kept; tasks_total has the count)",
        "pipeline.max_tasks",
    ),
    "report_raw_lines": (
        "lines of one report beyond 2,000 not kept in raw_lines (partial events, dead letters)",
        "fixed: 2,000 lines",
    ),
    "dead_letter_events": (
        "dead letters sent without their embedded event, to fit the record size",
        "sinks.kafka.max_request_size_bytes",
    ),
    "dead_letter_raw_lines": (
        "raw lines cut from the end of dead letters to fit the record size (raw_lines_truncated)",
        "sinks.kafka.max_request_size_bytes",
    ),
    "long_lines": ("input lines longer than the limit truncated", "sources.files.max_line_bytes"),
    "k8s_object_long_lines": (
        "Kubernetes object lines longer than the limit skipped (they cannot be parsed)",
        "kubernetes.max_object_line_bytes",
    ),
    "journald_long_lines": ("journal entries longer than journalctl's line limit skipped", "fixed"),
    "kmsg_buffer": ("kmsg records dropped from the full read buffer (oldest first)", "fixed"),
    "incident_summaries": (
        "incident summaries dropped while nothing closed them (newest kept)",
        "fixed: 10,000 open",
    ),
    "workload_history": (
        "remembered kills forgotten; workload_kills_in_window may count fewer",
        "fixed: 100,000 kills",
    ),
    "container_previous_ids": (
        "earlier container ids of a restarting container forgotten (oldest first); a very late kill "
        "in one of them is pod_not_found",
        "fixed: 8 per container",
    ),
    "pod_tombstones": (
        "deleted pods forgotten before tombstone_seconds; a later kill in one is pod_not_found",
        "fixed: 5,000 pods",
    ),
}


class _Renamed(Mapping[str, int]):
    """A live view of ``counts`` under other key names (several keys may share one name)."""

    def __init__(self, counts: Mapping[str, int], names: Mapping[str, str]) -> None:
        self._counts = counts
        self._names = names

    def __getitem__(self, key: str) -> int:
        if key not in self._names.values():
            raise KeyError(key)
        return sum(self._counts.get(src, 0) for src, name in self._names.items() if name == key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._names.values()))

    def __len__(self) -> int:
        return len(set(self._names.values()))


_reported_undeclared: set[tuple[str, str]] = set()


def declared_items(counts: Mapping[str, int]) -> dict[str, int]:
    """What a tally exposes: every key its declaration fixes (zero until counted) and the counted
    keys of its patterns. A key set directly that no declaration holds is logged once, not shown."""
    if not isinstance(counts, Tally):
        return dict(list(counts.items()))
    telemetry = counts.telemetry
    items = dict.fromkeys(telemetry.keys, 0)
    for key, count in list(counts.items()):
        if telemetry.count(key) is not None:
            items[key] = count
        elif (telemetry.component, key) not in _reported_undeclared:
            _reported_undeclared.add((telemetry.component, key))
            log.error(
                "%s counted %r, which its Telemetry does not declare; not exposed", telemetry.component, key
            )
    return items


def _reader(counts: Mapping[str, int], key: str) -> Callable[[], int]:
    return lambda: counts.get(key, 0)


class _Queue(Protocol):
    maxsize: int

    def qsize(self) -> int: ...


class _HasStats(Protocol):
    max_bytes: int

    def stats(self) -> SpoolStats: ...


class _HasCounts(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...


Readiness = tuple[bool, str]  # (ready, reason shown in the /readyz body)
ReadinessCheck = Callable[[], Readiness]


def _version() -> str:
    try:
        return metadata.version("oomstream")
    except metadata.PackageNotFoundError:
        return "unknown"


class _LiveCollector(Collector):
    """Exposes tallies and sizes owned by other objects, read at scrape time."""

    def __init__(self) -> None:
        self.sources: dict[str, Tally] = {}
        self.tallies: dict[str, tuple[str, str, list[Mapping[str, int]]]] = {}
        self.queues: dict[str, _Queue | Callable[[], int]] = {}
        self.spool: _HasStats | None = None
        self.checkpoints: list[Mapping[str, int]] = []
        self.values: dict[str, tuple[str, Callable[[], int]]] = {}  # counter name -> (help, read)

    def describe(self) -> Iterable[Metric]:
        # Reserves the fixed names in the registry, so a clash fails at registration, not at scrape.
        for name, help_text in SOURCE_COUNTS.values():
            yield CounterMetricFamily(name, help_text, labels=["source"])
        yield CounterMetricFamily("oomstream_source_counts", "", labels=["source", "name"])
        for name, help_text in CHECKPOINT_COUNTS.values():
            yield CounterMetricFamily(name, help_text)
        yield GaugeMetricFamily("oomstream_queue_depth", "Items waiting in a queue", labels=["queue"])
        yield GaugeMetricFamily("oomstream_queue_capacity", "Queue bound (0: unbounded)", labels=["queue"])
        yield from self._spool_families()

    def collect(self) -> Iterator[Metric]:
        # Keys declared with a metric of their own -> that metric{source}; the standard ones
        # (SOURCE_COUNTS) for every source, zero where a source does not count them.
        own: dict[str, tuple[str, dict[str, int]]] = {
            name: (help_text, {}) for name, help_text in SOURCE_COUNTS.values()
        }
        other = CounterMetricFamily(
            "oomstream_source_counts", "Other per-source tallies, by name", labels=["source", "name"]
        )
        for source, counts in sorted(self.sources.items()):
            for _, by_source in own.values():
                by_source[source] = 0
            for key, count in sorted(declared_items(counts).items()):
                declared = counts.telemetry.count(key)
                metric = declared.metric if declared is not None else ""
                if metric:
                    _, by_source = own.setdefault(metric, (declared.help if declared else "", {}))
                    by_source[source] = by_source.get(source, 0) + count
                else:
                    other.add_metric([source, key], count)
        for name, (help_text, by_source) in own.items():
            family = CounterMetricFamily(name, help_text, labels=["source"])
            for source, count in by_source.items():
                family.add_metric([source], count)
            yield family
        yield other
        for name, (help_text, label, mappings) in self.tallies.items():
            family = CounterMetricFamily(name, help_text, labels=[label])
            merged: dict[str, int] = {}
            for mapping in mappings:
                for value, count in declared_items(mapping).items():
                    merged[value] = merged.get(value, 0) + count
            for value, count in sorted(merged.items()):
                family.add_metric([value], count)
            yield family
        depth = GaugeMetricFamily("oomstream_queue_depth", "Items waiting in a queue", labels=["queue"])
        capacity = GaugeMetricFamily(
            "oomstream_queue_capacity", "Queue bound (0: unbounded)", labels=["queue"]
        )
        for name, queue in sorted(self.queues.items()):
            if callable(queue):
                depth.add_metric([name], queue())
            else:
                depth.add_metric([name], queue.qsize())
                capacity.add_metric([name], queue.maxsize)
        yield depth
        yield capacity
        for key, (name, help_text) in CHECKPOINT_COUNTS.items():
            yield CounterMetricFamily(name, help_text, value=sum(c.get(key, 0) for c in self.checkpoints))
        if self.spool is not None:
            yield from self._spool_families(self.spool.stats(), self.spool.max_bytes)
        for name, (help_text, read) in self.values.items():
            yield CounterMetricFamily(name, help_text, value=read())

    @staticmethod
    def _spool_families(stats: SpoolStats | None = None, max_bytes: int = 0) -> Iterator[Metric]:
        values = dataclasses.asdict(stats) if stats is not None else {}
        values["max_bytes"] = max_bytes
        for family, name, help_text, key in SPOOL_FAMILIES:
            yield family(name, help_text, value=values.get(key, 0))


class Metrics:
    """Every metric the service exposes, on one registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.oom_events = Counter(
            "oomstream_oom_events",
            "OOM kill events emitted (namespace is empty until Kubernetes enrichment fills it)",
            ["constraint", "limit_scope", "namespace"],
            registry=r,
        )
        self.partial_reports = Counter(
            "oomstream_partial_reports",
            "Events emitted from incomplete reports, by reason",
            ["reason"],
            registry=r,
        )
        self.k8s_signals = Counter(
            "oomstream_k8s_signals",
            "Kubernetes memory signals published (pod status OOMKilled, evictions, NPD/kubelet events)",
            ["type"],
            registry=r,
        )
        self.incidents = Counter(
            "oomstream_incidents",
            "Incidents closed (all signals of one kill), by verdict and whether Kubernetes reported them",
            ["verdict", "visible_in_kubernetes"],
            registry=r,
        )
        self.last_event_time = Gauge(
            "oomstream_last_event_timestamp_seconds",
            "Unix time at which the last OOM event was emitted",
            registry=r,
        )
        self.ready = Gauge("oomstream_ready", "1 while /readyz answers 200", registry=r)
        self.build_info = Info("oomstream_build", "Version of this oomstream", registry=r)
        self.build_info.info({"version": _version()})
        self.sink: SinkMetrics = sink_metrics(r)
        self._live = _LiveCollector()
        self._bounds_logged: dict[str, int] = {}
        r.register(self._live)
        self.track_tally(BOUND_METRIC, BOUND_HELP, "bound", dict.fromkeys(BOUNDS, 0))  # all visible

    # -- per event --------------------------------------------------------------------------------

    def observe_event(self, event: AnyEvent) -> None:
        """Count one emitted event (call once per event, after enrichment if there is any)."""
        if isinstance(event, K8sEvent):
            self.k8s_signals.labels(event.type).inc()
            return
        if isinstance(event, IncidentEvent):
            seen = event.visible_in_kubernetes
            visible = "unknown" if seen is None else str(seen).lower()
            self.incidents.labels(event.verdict, visible).inc()
            return
        namespace = ""
        if event.kubernetes is not None:
            namespace = event.kubernetes.namespace or ""
        self.oom_events.labels(
            event.constraint or "unknown", event.cgroup.limit_scope or "unknown", namespace
        ).inc()
        if event.partial:
            self.partial_reports.labels(event.partial_reason or "unknown").inc()
        self.last_event_time.set(time.time())

    # -- tallies read at scrape time --------------------------------------------------------------

    def track_source(self, name: str, counts: Tally) -> None:
        """Expose a source's tally under ``source=name``: keys declared with a metric of their own
        (those of ``SOURCE_COUNTS`` for every source) as that metric, every other declared key as
        ``oomstream_source_counts_total{source, name}``.

        Pass the long-lived ``Source.counts``: a new mapping for the same name replaces the old
        one, and a total that goes down reads as a counter reset to Prometheus.
        """
        self._live.sources[name] = counts

    def track_tally(self, name: str, help_text: str, label: str, counts: Mapping[str, int]) -> None:
        """Expose ``counts`` (label value -> total) as counter ``name{label=...}``; mappings tracked
        under one name are summed (e.g. the ``records_by_format`` of every source's framer).
        A ``Tally``'s declared keys are all shown (zero until counted), and its keys declared with
        a metric of their own are that metric too."""
        if isinstance(counts, Tally):
            for count in counts.telemetry:
                if count.metric and not count.is_pattern:
                    self._live.values[count.metric] = (count.help, _reader(counts, count.key))
        entry = self._live.tallies.get(name)
        if entry is None:
            self._live.tallies[name] = (help_text, label, [counts])
        elif all(existing is not counts for existing in entry[2]):
            entry[2].append(counts)

    def track_formats(self, counts: Tally) -> None:
        """Records framed per input format (``Framer.records_by_format``)."""
        self.track_tally("oomstream_records", "Kernel records framed, per input format", "format", counts)

    def track_parse_errors(self, counts: Tally) -> None:
        """Lines that could not be framed or used, by reason (``Framer.skipped``, long lines, ...)."""
        self.track_tally(
            "oomstream_parse_errors", "Input lines skipped as unparseable, by reason", "reason", counts
        )

    def track_bounds(self, counts: Tally) -> None:
        """Expose the keys ``counts`` declares with a bound as ``oomstream_bound_hits_total{bound}``
        (every bound of ``BOUNDS`` is visible, zero until first hit)."""
        names = counts.telemetry.bounds
        for key, bound in names.items():
            if bound not in BOUNDS:
                raise ValueError(
                    f"{counts.telemetry.component}: key {key!r} reports bound {bound!r}, which "
                    f"streamer.metrics.BOUNDS does not describe (add what happens there and its option)"
                )
        if names:
            self.track_tally(BOUND_METRIC, BOUND_HELP, "bound", _Renamed(counts, names))

    def bound_hits(self) -> dict[str, int]:
        """Totals of oomstream_bound_hits_total by bound, as a scrape would read them."""
        entry = self._live.tallies.get(BOUND_METRIC)
        totals: dict[str, int] = {}
        for mapping in entry[2] if entry is not None else []:
            for bound, count in list(mapping.items()):
                totals[bound] = totals.get(bound, 0) + count
        return totals

    def log_bound_hits(self) -> None:
        """One warning per bound hit since the last call: what happens there and its option."""
        for bound, total in sorted(self.bound_hits().items()):
            grew = total - self._bounds_logged.get(bound, 0)
            self._bounds_logged[bound] = total
            if grew > 0:
                what, option = BOUNDS.get(bound, ("", "?"))
                log.warning(
                    "bound %s reached %d time(s) since the last report: %s (%s)", bound, grew, what, option,
                    extra={"bound": bound, "rate_limit": False},
                )  # fmt: skip

    async def log_bound_hits_forever(self, interval_seconds: float = BOUND_LOG_INTERVAL_SECONDS) -> None:
        try:
            while True:
                await asyncio.sleep(interval_seconds)
                self.log_bound_hits()
        finally:
            self.log_bound_hits()  # what the last interval saw, at shutdown too

    def track_signals(self, tracker_counts: Tally, ledger_counts: Tally) -> None:
        """The Kubernetes signal tracker's tallies (objects skipped by reason, capped jumps, ...) and
        the bounds of the tracker and the signal ledger."""
        self.track_tally(
            "oomstream_k8s_signal_tracker",
            "Kubernetes objects and signals by what the tracker did with them",
            "name",
            tracker_counts,
        )
        self.track_bounds(tracker_counts)
        self.track_bounds(ledger_counts)

    def track_pipeline(self, counts: Tally) -> None:
        """The pipeline's tallies by name (and those its stages declare with a metric of their own,
        e.g. oomstream_k8s_skipped_occurrences)."""
        self.track_tally("oomstream_pipeline", "Pipeline tallies, by name", "name", counts)
        self.track_bounds(counts)

    def track_queue(self, name: str, queue: _Queue | Callable[[], int]) -> None:
        """Expose the depth (and bound) of an ``asyncio.Queue``, or of anything via a callable."""
        self._live.queues[name] = queue

    def track_spool(self, spool: _HasStats) -> None:
        self._live.spool = spool

    def track_checkpoints(self, store: _HasCounts) -> None:
        self._live.checkpoints.append(store.counts)


# -- readiness -------------------------------------------------------------------------------------


def sink_readiness(
    sink_connected: Callable[[], bool],
    spool: _HasStats | None = None,
    *,
    spool_fill_limit: float = 0.9,
) -> ReadinessCheck:
    """Ready while the sink is connected, or while it is not but the spool still has room."""

    def check() -> Readiness:
        if sink_connected():
            return True, "sink connected"
        if spool is None:
            return False, "sink disconnected and no spool configured"
        stats = spool.stats()
        fill = stats.bytes / spool.max_bytes if spool.max_bytes else 1.0
        if fill < spool_fill_limit:
            return True, f"sink disconnected; spooling ({stats.events} events, {fill:.0%} full)"
        return False, f"sink disconnected and spool {fill:.0%} full ({stats.dropped_events} events dropped)"

    return check


# -- HTTP ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
MAX_REQUEST_HEAD_BYTES = 16384


class MetricsServer:
    """Serves /metrics, /healthz and /readyz on ``listen_address`` (``host:port``; port 0: any free).

    ``async with MetricsServer(...) as server:`` starts listening; ``server.port`` is the bound port.
    """

    def __init__(
        self,
        metrics: Metrics,
        listen_address: str,
        readiness: ReadinessCheck | None = None,
        *,
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        host, self._requested_port = split_host_port(listen_address)
        self.host = host or None  # None: every interface, IPv4 and IPv6
        self.request_timeout_seconds = request_timeout_seconds
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self._requested_port, limit=MAX_REQUEST_HEAD_BYTES
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics endpoint listening on %s:%d", self.host or "*", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(self.request_timeout_seconds):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return  # a client that says nothing useful gets nothing back
            method, path, headers = _parse_head(head)
            if method is None:
                response = _Response(400, b"bad request\n")
            else:
                response = self._respond(method, path, headers)
            writer.write(_encode_response(response, include_body=method != "HEAD"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.request_timeout_seconds):
                    await writer.drain()
        except ConnectionError:
            pass
        except Exception:
            log.exception("metrics endpoint: request handling failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _respond(self, method: str, path: str, headers: Mapping[str, str]) -> _Response:
        if path not in ("/metrics", "/healthz", "/readyz"):
            return _Response(404, b"not found; try /metrics, /healthz or /readyz\n")
        if method not in ("GET", "HEAD"):
            return _Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        if path == "/healthz":
            return _Response(200, b"ok\n")
        if path == "/readyz":
            ready, reason = self._check_readiness()
            self.metrics.ready.set(1 if ready else 0)
            return _Response(200 if ready else 503, reason.encode() + b"\n")
        # Evaluate readiness at scrape time too, so the gauge does not wait for a /readyz probe.
        self.metrics.ready.set(1 if self._check_readiness()[0] else 0)
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        body = encoder(self.metrics.registry)
        extra: tuple[tuple[str, str], ...] = ()
        if "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=5)
            extra = (("Content-Encoding", "gzip"),)
        return _Response(200, body, content_type, extra)

    def _check_readiness(self) -> Readiness:
        if self.readiness is None:
            return True, "ready"
        try:
            return self.readiness()
        except Exception as error:
            log.exception("readiness check raised")
            return False, f"readiness check failed: {error}"


def _parse_head(head: bytes) -> tuple[str | None, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None, "", {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1].split("?", 1)[0], headers


def _encode_response(response: _Response, *, include_body: bool) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        "Cache-Control: no-store",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + response.body if include_body else head
