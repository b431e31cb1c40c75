"""Real OOM kills captured on this project's kernel (tests/data/real), in every output format.

Each scenario's ``meta.json`` holds the facts known from the capture's own process accounting
(pids, comms, cgroups, limits) and from the report; every format of the same kills must give the
same victims, cgroups and memcg figures, the same event ids where the format carries kernel time
and boot id, and events that validate against the schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eventschema import validate

from parsers.events import event_to_dict
from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.scan import LogScanner

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "real"
METAS = sorted(DATA.glob("*.meta.json"))
CASES = [
    (meta, DATA / name)
    for meta in METAS
    for name in json.loads(meta.read_text())["files"]
    if (DATA / name).exists()
]


def parse(path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    environment = meta["environment"]
    framer = Framer("auto", year=int(meta["captured_at_utc"][:4]), tz=None)
    if path.suffix == ".kmsg":
        framer.boot_id = environment.get("boot_id", "").replace("-", "") or None
    scanner = LogScanner(framer, Assembler())
    events = scanner.feed(path.read_bytes()) + scanner.finish() + scanner.assembler.flush()
    return [event_to_dict(event) for event in events]


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_real_fixtures_exist() -> None:
    assert len(METAS) >= 10 and len(CASES) >= 100


@pytest.mark.parametrize(("meta_path", "path"), CASES, ids=[case[1].name for case in CASES])
def test_real_capture(meta_path: Path, path: Path) -> None:
    meta = json.loads(meta_path.read_text())
    expected = meta["expected"]
    events = parse(path, meta)
    for event in events:
        validate(event)
    victims = [event for event in events if event["victim"] is not None]
    wanted_pids = sorted(expected["victim_pids"])
    if path.suffix == ".txt":
        # journalctl text shows "[NB blob data]" for a message that is not valid UTF-8 (counted).
        wanted_pids = sorted(
            e["victim"]["pid"] for e in expected["events"] if _utf8(bytes.fromhex(e["victim"]["comm_hex"]))
        )
    assert sorted(e["victim"]["pid"] for e in victims) == wanted_pids, path.name
    assert not any(e["partial"] for e in events), path.name
    by_pid = {event["victim"]["pid"]: event for event in victims}
    for wanted in expected["events"]:
        victim = wanted["victim"]
        if victim["pid"] not in by_pid and path.suffix == ".txt":
            continue
        event = by_pid[victim["pid"]]
        got = event["victim"]
        if "\\x" not in got["comm"] and "\t" not in victim["comm"]:
            # Formats that cannot carry a byte (journalctl text shows a blob, TAB as spaces) aside.
            assert got["comm"].encode("utf-8", "surrogateescape").hex() == victim[
                "comm_hex"
            ] or path.suffix in (".txt",), (path.name, got["comm"], victim["comm"])
        for key in ("anon_rss_kb", "file_rss_kb", "shmem_rss_kb", "pgtables_kb", "total_vm_kb", "uid"):
            assert got[key] == victim[key], (path.name, key)
        header = wanted["header"]
        if header is None:
            # Rate-limited: a bare kill line; nothing of the report may be invented.
            assert event["trigger"] is None and event["memcg"] is None, path.name
            continue
        assert event["cgroup"]["task_memcg"] == header["task_memcg"] == victim["task_memcg"], path.name
        assert event["cgroup"]["oom_memcg"] == header["oom_memcg"], path.name
        assert event["constraint"] == header["constraint"], path.name
        assert event["trigger"]["pid"] == header["trigger"]["pid"], path.name
        assert (
            event["trigger"]["gfp_mask"] == header["gfp_mask"]
            and event["trigger"]["order"] == header["order"]
        )
        assert event["memcg"]["usage_kb"] == header["memcg_usage_kb"], path.name
        assert event["memcg"]["limit_kb"] == header["memcg_limit_kb"], path.name
        assert event["memcg"]["failcnt"] == header["memcg_failcnt"], path.name
        if wanted.get("reaped"):
            assert event["reaped"] is not None, path.name


@pytest.mark.parametrize("meta_path", METAS, ids=[m.name.removesuffix(".meta.json") for m in METAS])
def test_same_kill_same_event_id_across_formats(meta_path: Path) -> None:
    """kmsg, dmesg, short-monotonic and kernel-stamped syslog carry the same kernel time."""
    meta = json.loads(meta_path.read_text())
    stem = meta_path.name.removesuffix(".meta.json")
    ids: dict[str, set[str]] = {}
    for suffix in (".dmesg", ".journal-short-monotonic.txt", ".kern-log"):
        path = DATA / (stem + suffix)
        if not path.exists():
            continue
        ids[suffix] = {e["event_id"] for e in parse(path, meta) if e["victim"] is not None}
    assert len(ids) >= 2
    first = ids[".dmesg"]
    for suffix, value in ids.items():
        if suffix.endswith(".txt"):
            # journalctl text drops messages that are not valid UTF-8 ("[NB blob data]").
            assert value <= first and value, suffix
        else:
            assert value == first, suffix
