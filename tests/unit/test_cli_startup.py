"""Start-up cost follows the command: `parse`, `check-config` and `--help` import no Kafka, HTTP or
Kubernetes client (together they cost over half a second of CPU per invocation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("aiokafka", "aiohttp", "kubernetes_asyncio", "prometheus_client", "tenacity")

PROBE = f"""
import contextlib, io, sys
from streamer.cli import main
argv = sys.argv[1:]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print(",".join(heavy))
"""


def imported_by(*argv: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return [name for name in line.split(",") if name]


@pytest.mark.parametrize(
    "argv",
    [
        ("parse", "streamer/samples/6.18-pod-limit.dmesg"),
        ("check-config",),
        ("--help",),
        ("publish", "--help"),
        ("tail", "--help"),
        ("timeline", "--help"),
        ("run", "--help"),
    ],
)
def test_light_commands_import_no_client_library(argv: tuple[str, ...]) -> None:
    assert imported_by(*argv) == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The probe itself must be able to fail: a command that does use Kafka shows aiokafka."""
    assert "aiokafka" in imported_by(
        "tail", "--bootstrap", "127.0.0.1:1", "--sinks-kafka-connect-timeout-seconds", "0.5"
    )
