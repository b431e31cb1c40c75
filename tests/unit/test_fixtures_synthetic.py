"""Fixtures built from the kernel's format strings and public reports, 3.10 .. 6.x.

Each ``tests/data/synthetic/<name>.log`` has ``<name>.expected.json``: the facts the text states,
written by hand from the sources it cites. Every event must also validate against the schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eventschema import validate

from parsers.events import OomEvent, event_to_dict
from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "synthetic"
CASES = sorted(DATA.glob("*.expected.json"))


def parse_file(path: Path) -> list[OomEvent]:
    scanner = LogScanner(Framer("auto", year=2024), Assembler())
    events = scanner.feed(path.read_bytes())
    events += scanner.finish()
    events += scanner.assembler.flush()
    return events


def check_event(name: str, actual: dict[str, Any], expected: dict[str, Any]) -> None:
    where = f"{name}: victim {expected.get('victim') and expected['victim'].get('pid')}"
    if expected.get("victim") is None:
        assert actual["victim"] is None, where
    else:
        for key, value in expected["victim"].items():
            assert actual["victim"][key] == value, f"{where}: victim.{key}"
    if expected.get("trigger") is None:
        assert actual["trigger"] is None, where
    else:
        for key, value in expected["trigger"].items():
            assert actual["trigger"][key] == value, f"{where}: trigger.{key}"
    assert actual["constraint"] == expected["constraint"] or (
        expected["constraint"] is None
        and actual["constraint"] == "CONSTRAINT_MEMCG"
        and actual["kill_message"] == "Memory cgroup out of memory"
    ), f"{where}: constraint"
    if actual["group_kill"] and actual["cgroup"]["task_memcg"] is None:
        # Group members: the text only says they are in the oom.group cgroup's subtree.
        assert actual["cgroup"]["oom_group"] == expected["task_memcg"], f"{where}: oom_group"
    else:
        assert actual["cgroup"]["task_memcg"] == expected["task_memcg"], f"{where}: task_memcg"
    if expected["oom_memcg"] is not None or expected.get("global_oom"):
        assert actual["cgroup"]["oom_memcg"] == expected["oom_memcg"], f"{where}: oom_memcg"
    if expected.get("global_oom"):
        assert actual["cgroup"]["limit_scope"] == "global", f"{where}: limit_scope"
    if expected["memcg"] is None:
        assert actual["memcg"] is None, f"{where}: memcg"
    else:
        for key, value in expected["memcg"].items():
            assert actual["memcg"][key] == value, f"{where}: memcg.{key}"
    assert actual["tasks_total"] == expected["tasks_count"], f"{where}: tasks_count"
    assert actual["group_kill"] == expected["group_kill"], f"{where}: group_kill"
    assert actual["partial"] == expected["partial"], f"{where}: partial"
    if expected.get("kernel_time") is not None:
        assert actual["kernel_time"] == pytest.approx(expected["kernel_time"], abs=1e-6), (
            f"{where}: kernel_time"
        )
    if expected.get("reaped") is None:
        assert actual["reaped"] is None, f"{where}: reaped"
    else:
        for key, value in expected["reaped"].items():
            assert actual["reaped"][key] == value, f"{where}: reaped.{key}"


@pytest.mark.parametrize("case", CASES, ids=[case.name.removesuffix(".expected.json") for case in CASES])
def test_synthetic_fixture(case: Path) -> None:
    expected = json.loads(case.read_text())
    log = case.with_name(case.name.removesuffix(".expected.json") + ".log")
    events = [event_to_dict(event) for event in parse_file(log)]
    for event in events:
        validate(event)
    assert len(events) == len(expected["events"]), [e["victim"] and e["victim"]["pid"] for e in events]
    for actual, wanted in zip(events, expected["events"], strict=True):
        check_event(case.name, actual, wanted)
    assert len({event["event_id"] for event in events}) == len(events)


def test_there_are_fixtures() -> None:
    assert len(CASES) >= 15
