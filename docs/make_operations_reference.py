"""Regenerates the generated parts of docs/operations.md: the configuration reference (from the
option declarations, streamer.config.option_specs()) and the metrics table (from the service's
metrics registry). Run: .venv/bin/python docs/make_operations_reference.py
tests/unit/test_operations_guide.py fails when the committed file differs from a fresh run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GUIDE = ROOT / "docs" / "operations.md"

from streamer import config  # noqa: E402
from streamer.metrics import Metrics  # noqa: E402


def _default(spec: config.OptionSpec) -> str:
    value = spec.default
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`" + ", ".join(value) + "`"
    return f"`{value}`"


def _type(spec: config.OptionSpec) -> str:
    describe: Any = getattr(config, "_describe_type", None)
    return str(describe(spec.type, spec.name)) if describe is not None else str(spec.type)


def configuration_reference() -> str:
    lines: list[str] = []
    section: object = object()
    for spec in config.option_specs():
        if spec.section != section:
            section = spec.section
            title = f"`[{spec.section}]`" if spec.section else "top level"
            lines += [
                "",
                f"#### {title}",
                "",
                "| option | default | type | environment | help |",
                "|---|---|---|---|---|",
            ]
        help_text = spec.help + (" (secret: masked in output, no flag)" if spec.secret else "")
        cells = [f"`{spec.name}`", _default(spec), _type(spec), f"`{spec.env_name}`", help_text]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines).strip()


def _built_metrics() -> Metrics:
    """The metrics of a service built (not started) with every part that registers families: a
    files source, the Kafka sink with side sinks (file, Kubernetes Events), the spool, Kubernetes
    (kubeconfig mode, objects files), the pid index. Nothing connects anywhere;
    tests/unit/test_option_wiring.py builds the same way."""
    from streamer.commands.run import build_service

    async def build(tmp: Path) -> Metrics:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1", "kind": "Config", "current-context": "c",
                    "clusters": [{"name": "c", "cluster": {"server": "https://192.0.2.1:6443"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                }
            )
        )  # fmt: skip
        settings: dict[str, Any] = {
            "node_name": "node", "sources.enabled": ["files"], "sources.files.paths": [os.devnull],
            "sinks.enabled": ["kafka", "file", "k8s_events"],
            "sinks.kafka.bootstrap_servers": ["192.0.2.1:9092"],
            "sinks.file.path": str(tmp / "events.jsonl"), "kubernetes.mode": "kubeconfig",
            "kubernetes.kubeconfig_path": str(kubeconfig), "kubernetes.objects_files": [os.devnull],
            "state.directory": str(tmp / "state"), "spool.directory": str(tmp / "spool"),
        }  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            service = await build_service(config.load_config(None, {}, settings), stack, io.StringIO())
            return service.metrics

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(build(Path(tmp)))


def _families() -> Iterator[tuple[str, str, str, list[str]]]:
    """(exposed name, type, help, label names) of every metric the service can expose
    (tests/integration/test_prometheus_alerts.py checks a real service's scrape against them)."""
    metrics = _built_metrics()
    seen: set[str] = set()
    wrappers = [getattr(metrics, name) for name in vars(metrics)] + [
        getattr(metrics.sink, n) for n in vars(metrics.sink)
    ]
    for wrapper in wrappers:
        name = getattr(wrapper, "_name", None)
        if name is None or name in seen:
            continue
        seen.add(name)
        kind = getattr(wrapper, "_type", "")
        exposed = {
            "counter": name + "_total",
            "info": name + "_info",
            "histogram": name + "_bucket/_count/_sum",
        }.get(kind, name)
        yield exposed, kind, wrapper._documentation, list(wrapper._labelnames)
    # Families read at scrape time, with their help as collect() gives it.
    collected = {family.name: family for family in metrics._live.collect()}
    for family in [*metrics._live.describe(), *collected.values()]:
        if family.name in seen:
            continue
        seen.add(family.name)
        exposed = family.name + "_total" if family.type == "counter" else family.name
        labels = list(getattr(family, "_labelnames", ()))
        documentation = collected[family.name].documentation if family.name in collected else ""
        yield exposed, family.type, documentation or family.documentation, labels


def metrics_table() -> str:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for exposed, kind, help_text, labels in sorted(_families()):
        lines.append(f"| `{exposed}` | {kind} | {', '.join(labels) or '-'} | {help_text or '-'} |")
    return "\n".join(lines)


GENERATED = {"configuration": configuration_reference, "metrics": metrics_table}


def render(text: str) -> str:
    for name, make in GENERATED.items():
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED {name}[^>]*-->\n)(?:.*?\n)?(<!-- END GENERATED {name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise SystemExit(
                f"{GUIDE}: no '<!-- BEGIN GENERATED {name} -->' ... '<!-- END GENERATED {name} -->' block"
            )
        match = pattern.search(text)
        assert match is not None
        text = text[: match.start()] + match.group(1) + make() + "\n" + match.group(2) + text[match.end() :]
    return text


if __name__ == "__main__":
    GUIDE.write_text(render(GUIDE.read_text()))
    print(f"wrote {GUIDE}")
