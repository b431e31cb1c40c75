"""The Helm chart as the tests see it: where helm is, and rendered objects as dicts.

helm comes from $HELM, else .tools/bin/helm (built by `make helm`), else PATH; tests skip with
the reason when there is none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "oomstream"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"


def helm_binary() -> str | None:
    for candidate in (os.environ.get("HELM"), str(ROOT / ".tools" / "bin" / "helm"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = helm_binary()
    assert binary is not None, "no helm binary"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def render(
    *values_files: Path, sets: tuple[str, ...] = (), namespace: str = "oomstream"
) -> list[dict[str, Any]]:
    args = ["template", "oomstream", str(CHART), "--namespace", namespace]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]
