"""`oomstream run` / `check-config` command-line behaviour: clear errors, masked secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def oomstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OOMSTREAM_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=clean, timeout=60, check=False,
    )  # fmt: skip


def test_check_config_masks_secrets_and_shows_the_file_values(tmp_path: Path) -> None:
    config = tmp_path / "oomstream.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = ["k1:9092"]\nsecurity_protocol = "SASL_PLAINTEXT"\n'
        'sasl_mechanism = "PLAIN"\nsasl_username = "u"\nsasl_password = "hunter2"\n'
    )
    result = oomstream("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["kafka"]["bootstrap_servers"] == ["k1:9092"]
    assert "hunter2" not in result.stdout and "hunter2" not in result.stderr


def test_unknown_key_is_named_with_its_file(tmp_path: Path) -> None:
    config = tmp_path / "oomstream.toml"
    config.write_text("[kafka]\nlingerms = 5\n")
    result = oomstream("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "lingerms" in result.stderr and "oomstream.toml" in result.stderr and "linger_ms" in result.stderr


def test_bad_environment_value_names_the_variable() -> None:
    result = oomstream("check-config", env={"OOMSTREAM_KAFKA_LINGER_MS": "soon"})
    assert result.returncode == 2 and "OOMSTREAM_KAFKA_LINGER_MS" in result.stderr


def test_run_without_bootstrap_says_how_to_set_it(tmp_path: Path) -> None:
    result = oomstream(
        "run",
        env={
            "OOMSTREAM_STATE_DIRECTORY": str(tmp_path / "s"),
            "OOMSTREAM_SPOOL_DIRECTORY": str(tmp_path / "p"),
        },
    )
    assert result.returncode == 2
    assert "OOMSTREAM_KAFKA_BOOTSTRAP" in result.stderr and "Traceback" not in result.stderr


def test_run_with_unreachable_kafka_fails_clearly_in_bounded_time(tmp_path: Path) -> None:
    result = oomstream(
        "run",
        "--source-kind", "file", "--source-files", str(ROOT / "streamer" / "samples" / "6.18-pod-limit.dmesg"),
        env={
            "OOMSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "OOMSTREAM_KAFKA_CONNECT_TIMEOUT_SECONDS": "3",
            "OOMSTREAM_KAFKA_REQUEST_TIMEOUT_SECONDS": "3",
            "OOMSTREAM_STATE_DIRECTORY": str(tmp_path / "s"),
            "OOMSTREAM_SPOOL_DIRECTORY": str(tmp_path / "p"),
            "OOMSTREAM_METRICS_ENABLED": "false",
        },
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_run_file_source_to_stdout_sink(tmp_path: Path) -> None:
    result = oomstream(
        "run", "--output-sink", "stdout", "--source-kind", "file", "--no-source-follow",
        "--source-files", str(ROOT / "streamer" / "samples" / "6.18-pod-limit.dmesg"),
        env={
            "OOMSTREAM_STATE_DIRECTORY": str(tmp_path / "s"),
            "OOMSTREAM_SPOOL_DIRECTORY": str(tmp_path / "p"),
            "OOMSTREAM_METRICS_ENABLED": "false",
        },
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["victim"]["pid"] for e in events if e["victim"]] and all(not e["partial"] for e in events)
    assert list((tmp_path / "s").iterdir()), "no checkpoint written at the end of input"
