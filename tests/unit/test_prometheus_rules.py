"""The alert rules and the dashboard, offline: `promtool check rules` and `promtool test rules`
(tests/prometheus/rules_test.yaml, a firing and a quiet case per alert), every alert unit-tested,
and every metric name in a rule or a panel query one that the service exports. The real Prometheus
test (tests/integration/test_prometheus_alerts.py) runs them against a live service."""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from helmchart import DASHBOARD, ROOT, RULES

RULES_TEST = ROOT / "tests" / "prometheus" / "rules_test.yaml"
promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="no promtool (`make tools` installs Debian's prometheus package)"
)
METRIC = re.compile(r"\b(oomstream_[a-z0-9_]+|up)\b(?!\s*\()")


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def exported_names() -> set[str]:
    """Every sample name the service can expose: the operator's guide's metrics table, as
    docs/make_operations_reference.py derives it from the registry (the real-Prometheus test checks
    that table against a live service's scrape)."""
    families = runpy.run_path(str(ROOT / "docs" / "make_operations_reference.py"))["_families"]
    names: set[str] = set()
    for exposed, _kind, _help, _labels in families():
        base, slash, _ = exposed.partition("_bucket/")
        names.update((f"{base}_bucket", f"{base}_count", f"{base}_sum") if slash else (exposed,))
    return names


@promtool
def test_promtool_check_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@promtool
def test_promtool_unit_tests() -> None:
    done = subprocess.run(["promtool", "test", "rules", str(RULES_TEST)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_every_alert_has_a_runbook_in_the_operators_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"].endswith(f"docs/operations.md#{name.lower()}")
        assert re.search(rf"^#+ {name}$", guide, re.MULTILINE), (
            f"no runbook section '{name}' in docs/operations.md"
        )


def test_rules_and_panels_use_only_exported_metrics() -> None:
    exported = exported_names() | {"up"}
    used: list[tuple[str, str]] = [(rule["alert"], rule["expr"]) for rule in alert_rules()]
    used += list(dashboard_queries())
    assert len(used) > 20
    for where, expr in used:
        names = set(METRIC.findall(expr))
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported by the service"


def test_dashboard_json_is_generated_from_its_declaration() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import make_dashboard, json; print(json.dumps(make_dashboard.dashboard(), indent=2))"],
        cwd=ROOT / "deploy" / "grafana", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(DASHBOARD.read_text()) == json.loads(done.stdout), (
        "grafana-dashboard.json is stale: run python deploy/grafana/make_dashboard.py"
    )
