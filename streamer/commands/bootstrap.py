"""Where the Kafka commands (publish, tail, timeline) find the broker, and say which they used.

The options come as ``oomstream run`` reads them (``--config FILE`` or ``$OOMSTREAM_CONFIG``,
``$OOMSTREAM_KAFKA_BOOTSTRAP`` and the other ``OOMSTREAM_SINKS_KAFKA_*`` variables, the
``--sinks-kafka-*`` flags and the short ``--bootstrap``). When none of them names a broker, the
local broker ``make run`` started is used: ``make run`` writes ``.state/kafka-bootstrap`` in the
checkout and removes it when it stops; the broker must answer.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamer.config import BOOTSTRAP_KEY, ENV_BOOTSTRAP_ALIAS
from streamer.errors import CliError

LOCAL_BROKER_FILE = Path(".state") / "kafka-bootstrap"
PROBE_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Bootstrap:
    servers: str
    origin: str  # "--bootstrap", "$OOMSTREAM_KAFKA_BOOTSTRAP", "the local broker `make run` started (...)"


def local_broker_files(cwd: Path | None = None) -> list[Path]:
    """The marker in the current directory and in the checkout this package runs from."""
    checkout = Path(__file__).resolve().parent.parent.parent
    candidates = [(cwd or Path.cwd()) / LOCAL_BROKER_FILE, checkout / LOCAL_BROKER_FILE]
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def _answers(servers: str) -> bool:
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), PROBE_TIMEOUT_SECONDS):
                return True
        except (OSError, ValueError):
            continue
    return False


def configured_origin(origins: Mapping[str, str], flag: str | None) -> str:
    """Where the configured bootstrap servers came from: the flag, a variable, a file."""
    if flag:
        return "--bootstrap"
    where = origins.get(BOOTSTRAP_KEY, "the configuration")
    if where.startswith("OOMSTREAM_"):
        return f"${where}"
    if where.startswith("--"):
        return where
    return f"{BOOTSTRAP_KEY} in {where}"


def find_local_broker(cwd: Path | None = None) -> Bootstrap:
    """The broker ``make run`` started, or a CliError saying how to name one."""
    stale: list[str] = []
    for marker in local_broker_files(cwd):
        try:
            servers = marker.read_text().strip()
        except OSError:
            continue
        if not servers:
            continue
        if _answers(servers):
            return Bootstrap(servers, f"the local broker `make run` started ({marker})")
        stale.append(f"{servers} (from {marker}) does not answer")
    hint = f"; the local broker {'; '.join(stale)}: is `make run` still running?" if stale else ""
    raise CliError(
        "no Kafka bootstrap servers: pass --bootstrap HOST:PORT[,HOST:PORT...], "
        f"set {ENV_BOOTSTRAP_ALIAS} (or [sinks.kafka] bootstrap_servers in --config FILE), "
        f"or start the local broker with `make run`{hint}"
    )
