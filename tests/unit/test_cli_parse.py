"""`oomstream parse`: files, gzip, stdin, errors and the summary; every event validates."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eventschema import validate

from streamer.cli import main

ROOT = Path(__file__).resolve().parents[2]
KILL = (
    "[   87.622107] Memory cgroup out of memory: Killed process 2031 (python3) total-vm:75160kB, "
    "anon-rss:65152kB, file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:184kB oom_score_adj:0\n"
)
HEADER = "[   87.612135] python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, object]], str]:
    code = main(args)
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, events, captured.err


def test_parse_plain_and_gzip_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "kern.log"
    plain.write_text("[ 1.0] boot\n" + HEADER + KILL)
    packed = tmp_path / "kern.log.1.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write(KILL.replace("2031", "2032").replace("87.622107", "90.000001"))
    code, events, err = run_cli(["parse", str(packed), str(plain)], capsys)
    assert code == 0
    assert [e["victim"]["pid"] for e in events] == [2032, 2031]  # type: ignore[index]
    for event in events:
        validate(event)
    assert "2 input(s)" in err and "events: 2" in err and "dmesg=" in err
    assert events[1]["source"]["position"]["path"] == str(plain)  # type: ignore[index]


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, events, err = run_cli(["parse", str(tmp_path / "nope.log")], capsys)
    assert code == 2 and events == []
    assert "nope.log: no such file" in err


def test_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["parse", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err


def test_unknown_format_names_the_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "parse", "--format", "xml", "x.log"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2 and "--format" in result.stderr and "xml" in result.stderr


def test_stdin_and_truncated_report_is_partial() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "parse", "-"],
        input=HEADER + "[   87.612164] CPU: 1 UID: 0 PID: 2031 Comm: python3 Not tainted 6.18.44 #1\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [event] = [json.loads(line) for line in result.stdout.splitlines()]
    validate(event)
    assert event["partial"] is True and event["victim"] is None and event["trigger"]["pid"] == 2031
    assert event["source"]["kind"] == "stdin" and "partial: 1" in result.stderr


def test_garbage_input_is_counted_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(200_000) + b"\n" + KILL.encode() + b"\xff\xfe\n{bad json\n")
    code, events, err = run_cli(["parse", str(garbage)], capsys)
    assert code == 0 and [e["victim"]["pid"] for e in events] == [2031]  # type: ignore[index]
    assert "lines" in err


def test_event_json_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from parsers.events import event_from_dict, event_to_json

    plain = tmp_path / "kern.log"
    plain.write_text(HEADER + KILL)
    _, events, _ = run_cli(["parse", str(plain)], capsys)
    for data in events:
        rebuilt = event_from_dict(data)
        assert json.loads(event_to_json(rebuilt)) == data
