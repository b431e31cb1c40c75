"""Writes deploy/helm/oomstream/files/grafana-dashboard.json (run: python deploy/grafana/make_dashboard.py).

The panels are declared here once, as (title, kind, unit, queries); the JSON is generated so every
panel has the same datasource, variables and layout. tests/integration/test_prometheus_alerts.py
runs every query against a real Prometheus scraping a real `oomstream run`.

Queries of counters that appear only at their first increment (failures, retries, dead letters)
end in `or vector(0)`, so a healthy fleet shows 0 rather than "No data".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "helm" / "oomstream" / "files" / "grafana-dashboard.json"
SEL = 'instance=~"$instance"'
RATE = "$__rate_interval"
WORKLOAD = "namespace, workload_kind, workload"


def summed(labels: str, fn: str, metric: str, window: str = RATE, match: str = "") -> str:
    """``sum by (labels) (fn(metric{instance=~"$instance", match}[window]))``."""
    selector = f"{match}, {SEL}" if match else SEL
    return f"sum by ({labels}) ({fn}({metric}{{{selector}}}[{window}]))"


def quantile(q: float, metric: str) -> str:
    return f"histogram_quantile({q}, {summed('le', 'rate', metric)})"


# (title, kind, unit, [(legend, expr)], width)
Row = tuple[str, list[tuple[str, str, str, list[tuple[str, str]], int]]]
ROWS: list[Row] = [
    (
        "OOM kills",
        [
            (
                "Kills by namespace / workload",
                "timeseries",
                "short",
                [
                    (
                        "{{namespace}} {{workload_kind}}/{{workload}}",
                        summed(WORKLOAD, "increase", "oomstream_oom_events_total"),
                    )
                ],
                12,
            ),
            (
                "Kills by limit fired",
                "timeseries",
                "short",
                [
                    (
                        "{{limit_fired}}",
                        summed("limit_fired", "increase", "oomstream_oom_events_total"),
                    )
                ],
                6,
            ),
            (
                "Kills by constraint",
                "piechart",
                "short",
                [
                    (
                        "{{constraint}}",
                        summed("constraint", "increase", "oomstream_oom_events_total", "$__range"),
                    )
                ],
                6,
            ),
            (
                "RSS vs limit at the last kill, per workload",
                "bargauge",
                "bytes",
                [
                    (
                        "RSS {{namespace}}/{{workload}}",
                        f"max by ({WORKLOAD}) (oomstream_oom_last_kill_rss_bytes{{{SEL}}})",
                    ),
                    (
                        "limit {{namespace}}/{{workload}}",
                        f"max by ({WORKLOAD}) (oomstream_oom_last_kill_limit_bytes{{{SEL}}})",
                    ),
                ],
                12,
            ),
            (
                "Top workloads by kills (selected range)",
                "table",
                "short",
                [
                    (
                        "",
                        f"topk(20, {summed(WORKLOAD, 'increase', 'oomstream_oom_events_total', '$__range')})",
                    )
                ],
                6,
            ),
            (
                "Incidents: seen by Kubernetes?",
                "timeseries",
                "short",
                [
                    (
                        "visible_in_kubernetes={{visible_in_kubernetes}}",
                        summed("visible_in_kubernetes", "increase", "oomstream_incidents_total"),
                    )
                ],
                6,
            ),
        ],
    ),
    (
        "Pipeline health",
        [
            (
                "Nodes ready",
                "stat",
                "short",
                [
                    ("ready", f"sum(oomstream_ready{{{SEL}}})"),
                    ("up", 'sum(up{job="oomstream", ' + SEL + "})"),
                ],
                4,
            ),
            (
                "Sink healthy",
                "stat",
                "short",
                [("healthy nodes", f"sum(oomstream_sink_healthy{{{SEL}}})")],
                4,
            ),
            (
                "Kernel records read / s by source",
                "timeseries",
                "ops",
                [
                    (
                        "{{source}}",
                        summed("source", "rate", "oomstream_source_records_total"),
                    )
                ],
                8,
            ),
            (
                "Lost kernel records",
                "timeseries",
                "short",
                [
                    (
                        "{{instance}} {{source}}",
                        summed("instance, source", "increase", "oomstream_source_lost_records_total"),
                    )
                ],
                8,
            ),
            (
                "Events delivered / s by topic",
                "timeseries",
                "ops",
                [
                    (
                        "{{topic}}",
                        summed("topic", "rate", "oomstream_sink_events_sent_total"),
                    )
                ],
                8,
            ),
            (
                "Delivery failures, retries, dead letters / s",
                "timeseries",
                "ops",
                [
                    (
                        "failed {{reason}}",
                        summed("reason", "rate", "oomstream_sink_events_failed_total") + " or vector(0)",
                    ),
                    (
                        "retried {{reason}}",
                        summed("reason", "rate", "oomstream_sink_retries_total") + " or vector(0)",
                    ),
                    (
                        "dead-lettered {{reason}}",
                        summed("reason", "rate", "oomstream_sink_dead_lettered_total") + " or vector(0)",
                    ),
                ],
                8,
            ),
            (
                "Produce latency p50 / p99",
                "timeseries",
                "s",
                [
                    (
                        "p50",
                        quantile(0.5, "oomstream_sink_produce_latency_seconds_bucket"),
                    ),
                    (
                        "p99",
                        quantile(0.99, "oomstream_sink_produce_latency_seconds_bucket"),
                    ),
                ],
                8,
            ),
            (
                "Spool fill",
                "timeseries",
                "percentunit",
                [("{{instance}}", f"oomstream_spool_bytes{{{SEL}}} / oomstream_spool_max_bytes{{{SEL}}}")],
                8,
            ),
            (
                "Spool events waiting / dropped",
                "timeseries",
                "short",
                [
                    ("waiting {{instance}}", f"oomstream_spool_events{{{SEL}}}"),
                    (
                        "dropped {{instance}}",
                        f"increase(oomstream_spool_dropped_events_total{{{SEL}}}[{RATE}])",
                    ),
                ],
                8,
            ),
            (
                "State write errors (disk full?)",
                "timeseries",
                "short",
                [
                    (
                        "spool {{instance}}",
                        f"increase(oomstream_spool_write_errors_total{{{SEL}}}[{RATE}])",
                    ),
                    (
                        "checkpoint {{instance}}",
                        f"increase(oomstream_checkpoint_save_errors_total{{{SEL}}}[{RATE}])",
                    ),
                ],
                8,
            ),
            (
                "Size bounds hit",
                "timeseries",
                "short",
                [("{{bound}}", summed("bound", "increase", "oomstream_bound_hits_total"))],
                8,
            ),
            (
                "Queue depth",
                "timeseries",
                "short",
                [("{{instance}} {{queue}}", f"oomstream_queue_depth{{{SEL}}}")],
                8,
            ),
            (
                "Enrichment outcome / s",
                "timeseries",
                "ops",
                [
                    (
                        "{{name}}",
                        summed("name", "rate", "oomstream_source_counts_total", match='source="enrichment"'),
                    )
                ],
                8,
            ),
            (
                "Versions",
                "table",
                "short",
                [("", f"count by (version) (oomstream_build_info{{{SEL}}})")],
                8,
            ),
        ],
    ),
]


def panel(
    panel_id: int, title: str, kind: str, unit: str, queries: list[tuple[str, str]], x: int, y: int, w: int
) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": expr,
            "legendFormat": legend or "__auto",
            "instant": kind in ("table", "bargauge", "piechart", "stat"),
            "range": kind not in ("table", "bargauge", "piechart", "stat"),
        }
        for i, (legend, expr) in enumerate(queries)
    ]
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": targets,
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        for title, kind, unit, queries, w in row_panels:
            if x + w > 24:
                x, y = 0, y + 8
            panels.append(panel(next_id, title, kind, unit, queries, x, y, w))
            next_id += 1
            x += w
        y += 8
    return {
        "uid": "oomstream",
        "title": "oomstream: OOM kills and pipeline health",
        "tags": ["oomstream", "oom", "kubernetes"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "instance",
                    "type": "query",
                    "label": "Node",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": "label_values(oomstream_build_info, instance)", "refId": "instance"},
                    "definition": "label_values(oomstream_build_info, instance)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
