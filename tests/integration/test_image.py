"""The container image, built from the repository's Containerfile with podman (deploy/image/build.sh)
and run as the Helm chart runs it: `--version`, `parse` on a bundled sample, `check-config`, and a
short `run` that publishes to the real local broker, whose records the test reads back.

Where this machine cannot build images (no podman, no mmdebstrap, no way to make the base, podman
unable to run a container) every test skips with that reason. Once the base exists, a failed build
of the Containerfile is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from helmchart import FULL_VALUES, helm_binary, one, render

from streamer import package_version
from tests.integration.kafka_broker import consume_all, unique_topic

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("TOOLS_DIR", ROOT / ".tools"))
BUILD = ROOT / "deploy" / "image" / "build.sh"
SAMPLE = "6.6-oom-group-kill.dmesg"
# What the chart's DaemonSet allows the container (deploy/helm/oomstream/templates/daemonset.yaml).
LOCKED_DOWN = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp"]


def podman_env() -> dict[str, str]:
    """The environment deploy/image/podman-env.sh sets up (private storage, runc, ulimits)."""
    out = subprocess.run(
        ["bash", "-c", f'TOOLS="{TOOLS}"; source deploy/image/podman-env.sh; env -0'],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def podman(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["podman", *args], env=env, input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[str, dict[str, str]]]:
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"cannot build images here: {tool} is not installed (make tools installs it)")
    if os.geteuid() != 0:
        pytest.skip("cannot build images here: the podman settings of deploy/image need root")
    env = podman_env()
    build = subprocess.run([str(BUILD)], cwd=ROOT, env=env, capture_output=True, timeout=1800)
    stderr = build.stderr.decode(errors="replace")
    if build.returncode == 4:  # build.sh: mmdebstrap itself failed; anything else is a failure
        pytest.skip(f"cannot build images here: making the base failed: {stderr[-1500:]}")
    assert build.returncode == 0, f"podman build of Containerfile failed:\n{stderr[-4000:]}"
    tag = build.stdout.decode().strip().splitlines()[-1]
    probe = podman(env, "run", "--rm", "--network", "none", "--entrypoint", "true", tag)
    if probe.returncode != 0:
        pytest.skip(f"cannot run containers here: {probe.stderr.decode(errors='replace')[-1000:]}")
    yield tag, env


def run_in(
    image: tuple[str, dict[str, str]], *args: str, options: tuple[str, ...] = (), stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    tag, env = image
    interactive = ["-i"] if stdin is not None else []
    # No network unless asked: podman's bridge networking would leave iptables chains behind.
    network = [] if "--network" in options else ["--network", "none"]
    return podman(env, "run", "--rm", *interactive, *network, *LOCKED_DOWN, *options, tag, *args, stdin=stdin)


def test_version_labels_user_and_no_compilers(image: tuple[str, dict[str, str]]) -> None:
    tag, env = image
    done = run_in(image, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == f"oomstream {package_version()}"
    inspect = json.loads(podman(env, "image", "inspect", tag).stdout)[0]
    labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == package_version()
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")
    assert inspect["Config"]["User"] not in ("", "0", "root", "0:0")
    assert inspect["Config"]["Entrypoint"] == ["oomstream"] and inspect["Config"]["Cmd"] == ["run"]
    which = run_in(
        image, "-c", "import shutil; print([c for c in ('gcc', 'cc', 'g++', 'clang', 'make', 'ld') if shutil.which(c)])",
        options=("--entrypoint", "python3"),
    )  # fmt: skip
    assert which.returncode == 0, which.stderr
    assert which.stdout.decode().strip() == "[]", f"compilers in the final image: {which.stdout!r}"


def test_parse_a_bundled_sample_as_the_host_does(image: tuple[str, dict[str, str]]) -> None:
    inside = run_in(image, "parse", f"/usr/share/oomstream/samples/{SAMPLE}")
    assert inside.returncode == 0, inside.stderr
    host = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "parse", str(ROOT / "streamer/samples" / SAMPLE)],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    events = [json.loads(line) for line in inside.stdout.splitlines()]
    expected = [json.loads(line) for line in host.stdout.splitlines()]
    for event in events + expected:  # the sample's path differs between image and checkout
        for position in ("position", "report_position"):
            event["source"][position].pop("path")
    assert events and events == expected
    assert "reports:" in inside.stderr.decode()


def test_check_config_validates_and_names_bad_options(image: tuple[str, dict[str, str]]) -> None:
    good = run_in(image, "check-config", options=("-e", "OOMSTREAM_KAFKA_BOOTSTRAP=kafka-0.kafka:9092"))
    assert good.returncode == 0, good.stderr
    assert "kafka-0.kafka:9092" in good.stdout.decode()
    bad = run_in(image, "check-config", options=("-e", "OOMSTREAM_SINKS_KAFKA_LINGER_MS=soon"))
    assert bad.returncode == 2
    assert "OOMSTREAM_SINKS_KAFKA_LINGER_MS" in bad.stderr.decode()


def test_run_publishes_to_the_local_broker(
    image: tuple[str, dict[str, str]], kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`oomstream run` in the locked-down container (read-only root, no capabilities, non-root),
    its state on a mounted directory, reading a sample on stdin and publishing to the broker."""
    topic = unique_topic("image")
    state = tmp_path / "lib"
    state.mkdir()
    os.chown(state, 65532, 65532)
    sample = (ROOT / "streamer/samples" / SAMPLE).read_bytes()
    done = run_in(
        image, "run", "--quiet", "--log-format", "text",
        options=(
            "--network", "host", "-v", f"{state}:/var/lib/oomstream",
            "-e", f"OOMSTREAM_KAFKA_BOOTSTRAP={kafka_bootstrap}",
            "-e", f"OOMSTREAM_SINKS_KAFKA_EVENTS_TOPIC={topic}",
            "-e", f"OOMSTREAM_SINKS_KAFKA_DEAD_LETTER_TOPIC={topic}.dlq",
            "-e", "OOMSTREAM_SOURCES_ENABLED=stdin",
            "-e", "OOMSTREAM_KUBERNETES_MODE=off", "-e", "OOMSTREAM_METRICS_ENABLED=false",
            "-e", "OOMSTREAM_PIPELINE_LINGER_SECONDS=0.2",
        ),
        stdin=sample,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    expected = [json.loads(line) for line in run_in(image, "parse", "-", stdin=sample).stdout.splitlines()]
    published = [
        json.loads(r.value) for r in asyncio.run(consume_all(kafka_bootstrap, topic, timeout_seconds=60))
    ]
    kills = [e for e in published if e.get("type", "oom_kill") == "oom_kill"]
    assert sorted(e["event_id"] for e in kills) == sorted(e["event_id"] for e in expected)
    assert (state / "state").is_dir(), "no checkpoint directory written on the mounted volume"


def test_journalctl_in_the_image_reads_the_hosts_journal(image: tuple[str, dict[str, str]]) -> None:
    """The journald source runs journalctl: the image has one, and it reads a node's journal files
    (mounted read-only, as the chart mounts them) like the host's own journalctl."""
    version = run_in(image, "--version", options=("--entrypoint", "journalctl"))
    assert version.returncode == 0 and version.stdout.startswith(b"systemd "), version.stderr
    journals = [d for d in (Path("/run/log/journal"), Path("/var/log/journal")) if any(d.glob("*/*.journal"))]
    if not journals or shutil.which("journalctl") is None:
        pytest.skip("no journal files on this host to read from the image (start journald to have some)")
    directory = next(iter(journals[0].iterdir()))
    query = ["-D", f"/journal/{directory.name}", "-o", "json", "-n", "20", "--no-pager", "_TRANSPORT=kernel"]
    # uid 0 without capabilities, as the chart's DaemonSet runs (the journal files are root's, 0640).
    # SYSTEMD_COLORS=0: journalctl as PID 1 colours its output (as the service's child it does not).
    as_daemonset = (
        "--user",
        "0",
        "-e",
        "SYSTEMD_COLORS=0",
        "--entrypoint",
        "journalctl",
        "-v",
        f"{journals[0]}:/journal:ro",
    )
    inside = run_in(image, *query, options=as_daemonset)
    assert inside.returncode == 0, inside.stderr
    cursors = [json.loads(line)["__CURSOR"] for line in inside.stdout.splitlines()]
    assert cursors, "no kernel entries read from the image"
    # The same entries from the host's journalctl, from the first one the image read on (the
    # journal may grow between the two reads).
    host = subprocess.run(
        ["journalctl", "-D", str(directory), "-o", "json", "--no-pager", f"--cursor={cursors[0]}", "_TRANSPORT=kernel"],
        capture_output=True, check=True,
    )  # fmt: skip
    host_cursors = [json.loads(line)["__CURSOR"] for line in host.stdout.splitlines()]
    assert host_cursors[: len(cursors)] == cursors


@pytest.mark.parametrize("values", [(), (FULL_VALUES,)], ids=["default", "full"])
def test_the_charts_configmap_passes_check_config_in_the_image(
    image: tuple[str, dict[str, str]], tmp_path: Path, values: tuple[Path, ...]
) -> None:
    """What the chart renders is what the image accepts: its ConfigMap, mounted where the
    DaemonSet mounts it, through `oomstream check-config` inside the image."""
    if helm_binary() is None:
        pytest.skip("no helm binary: `make helm` builds one into .tools/bin")
    configmap = one(render(*values), "ConfigMap", "oomstream")
    config = tmp_path / "oomstream.toml"
    config.write_text(configmap["data"]["oomstream.toml"])
    config.chmod(0o644)  # as a ConfigMap volume presents it
    tmp_path.chmod(0o755)
    done = run_in(
        image, "check-config", "--config", "/etc/oomstream/oomstream.toml",
        options=("-v", f"{tmp_path}:/etc/oomstream:ro"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    printed = json.loads(done.stdout)
    assert (
        printed["sinks"]["kafka"]["bootstrap_servers"]
        == tomllib.loads(config.read_text())["sinks"]["kafka"]["bootstrap_servers"]
    )
