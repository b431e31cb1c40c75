"""Where the Kafka commands (tail, timeline, publish) find the broker when no flag names one.

In order: ``--bootstrap``; ``$OOMSTREAM_KAFKA_BOOTSTRAP`` / ``$OOMSTREAM_KAFKA_BOOTSTRAP_SERVERS``;
``kafka.bootstrap_servers`` of the configuration file in ``$OOMSTREAM_CONFIG``; the local broker
``make run`` started (it writes ``.state/kafka-bootstrap`` in the checkout and removes it when it
stops). The answer says which one was used, so the user never guesses.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamer.config import ENV_BOOTSTRAP_ALIAS, ENV_CONFIG_PATH
from streamer.errors import CliError

ENV_BOOTSTRAP_FULL = "OOMSTREAM_KAFKA_BOOTSTRAP_SERVERS"
LOCAL_BROKER_FILE = Path(".state") / "kafka-bootstrap"
PROBE_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Bootstrap:
    servers: str
    origin: str  # "--bootstrap", "$OOMSTREAM_KAFKA_BOOTSTRAP", "the local broker make run started (...)"


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


def _from_config_file(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CliError(f"{path} (${ENV_CONFIG_PATH}): cannot read it: {error}") from None
    kafka = document.get("kafka")
    servers = kafka.get("bootstrap_servers") if isinstance(kafka, dict) else None
    if isinstance(servers, list):
        servers = ",".join(str(s) for s in servers)
    return servers if isinstance(servers, str) and servers else None


def find_bootstrap(
    flag: str | None, env: Mapping[str, str] | None = None, *, cwd: Path | None = None
) -> Bootstrap:
    env = os.environ if env is None else env
    if flag:
        return Bootstrap(flag, "--bootstrap")
    for name in (ENV_BOOTSTRAP_ALIAS, ENV_BOOTSTRAP_FULL):
        if env.get(name):
            return Bootstrap(env[name], f"${name}")
    config_path = env.get(ENV_CONFIG_PATH)
    if config_path:
        servers = _from_config_file(config_path)
        if servers:
            return Bootstrap(servers, f"kafka.bootstrap_servers in {config_path}")
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
        f"set {ENV_BOOTSTRAP_ALIAS}, or start the local broker with `make run`{hint}"
    )
