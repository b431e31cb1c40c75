"""`oomstream run` as a subprocess on the real /dev/kmsg, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_oomstream(tmp: Path, **env: str) -> subprocess.Popen[str]:
    """`oomstream run --log-format text` reading /dev/kmsg, with its state and spool under ``tmp``,
    metrics on a free port and a 0.5 s linger; ``env`` adds or overrides settings."""
    full = dict(os.environ)
    full.update(
        OOMSTREAM_STATE_DIRECTORY=str(tmp / "state"),
        OOMSTREAM_SPOOL_DIRECTORY=str(tmp / "spool"),
        OOMSTREAM_METRICS_LISTEN_ADDRESS="127.0.0.1:0",
        OOMSTREAM_SOURCES_ENABLED="kmsg",
        OOMSTREAM_PIPELINE_LINGER_SECONDS="0.5",
    )
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", "--log-format", "text"],
        cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def kafka_settings(bootstrap: str, topic: str) -> dict[str, str]:
    """The environment that points the service at ``topic`` (dead letters to ``topic.dlq``)."""
    return {
        "OOMSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "OOMSTREAM_SINKS_KAFKA_EVENTS_TOPIC": topic,
        "OOMSTREAM_SINKS_KAFKA_DEAD_LETTER_TOPIC": topic + ".dlq",
    }
