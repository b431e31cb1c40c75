"""docs/operations.md: its generated parts (configuration reference, metrics table) equal a fresh
generation, every option and every metric is in it, README links it, and its example event is a
valid event of the current schema."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from streamer.config import option_specs
from tests.eventschema import validate

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_operations_reference", ROOT / "docs" / "make_operations_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_parts_are_up_to_date() -> None:
    text = GUIDE.read_text()
    assert generator().render(text) == text, (
        "docs/operations.md is stale: run .venv/bin/python docs/make_operations_reference.py"
    )


def test_every_option_and_its_variable_is_documented() -> None:
    text = GUIDE.read_text()
    for spec in option_specs():
        assert f"`{spec.env_name}`" in text, spec.key


def test_every_metric_is_in_the_table() -> None:
    text = GUIDE.read_text()
    families = list(generator()._families())
    assert len(families) > 25
    for exposed, _kind, _help, _labels in families:
        assert f"| `{exposed}` |" in text


def test_readme_links_the_guide() -> None:
    assert "(docs/operations.md)" in (ROOT / "README.md").read_text()


def test_the_example_event_is_valid() -> None:
    event = json.loads((ROOT / "docs" / "example-event.json").read_text())
    validate(event)
    assert event["type"] == "oom_kill" and event["enrichment"]["status"] == "ok"
    assert event["event_id"] in GUIDE.read_text()
