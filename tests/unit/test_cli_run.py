"""`oomstream run` / `check-config` command-line behaviour: clear errors, masked secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from eventschema import validate_any

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "streamer" / "samples" / "6.18-pod-limit.dmesg")
# `oomstream run` over the sample kernel log to stdout, ending at the end of the file
RUN_SAMPLE = (
    "run", "--sinks-enabled", "stdout", "--sources-enabled", "files", "--no-sources-files-follow",
    "--sources-files-paths", SAMPLE,
)  # fmt: skip


def oomstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OOMSTREAM_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args],
        capture_output=True, text=True, cwd=ROOT, env=clean, timeout=60, check=False,
    )  # fmt: skip


def quiet_env(tmp_path: Path) -> dict[str, str]:
    """State and spool in ``tmp_path``, no metrics server."""
    return {
        "OOMSTREAM_STATE_DIRECTORY": str(tmp_path / "s"),
        "OOMSTREAM_SPOOL_DIRECTORY": str(tmp_path / "p"),
        "OOMSTREAM_METRICS_ENABLED": "false",
    }


def events_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The events a run printed, each checked against its schema (the service ran in another
    process, out of reach of tests/conftest.py's check)."""
    return [validate_any(json.loads(line)) for line in result.stdout.splitlines() if line.startswith("{")]


def test_check_config_masks_secrets_and_shows_the_file_values(tmp_path: Path) -> None:
    config = tmp_path / "oomstream.toml"
    config.write_text(
        '[sinks.kafka]\nbootstrap_servers = ["k1:9092"]\nsecurity_protocol = "SASL_PLAINTEXT"\n'
        'sasl_mechanism = "PLAIN"\nsasl_username = "u"\nsasl_password = "hunter2"\n'
    )
    result = oomstream("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["sinks"]["kafka"]["bootstrap_servers"] == ["k1:9092"]
    assert "hunter2" not in result.stdout and "hunter2" not in result.stderr


def test_unknown_key_is_named_with_its_file(tmp_path: Path) -> None:
    config = tmp_path / "oomstream.toml"
    config.write_text("[sinks.kafka]\nlingerms = 5\n")
    result = oomstream("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "lingerms" in result.stderr and "oomstream.toml" in result.stderr and "linger_ms" in result.stderr


def test_bad_environment_value_names_the_variable() -> None:
    result = oomstream("check-config", env={"OOMSTREAM_SINKS_KAFKA_LINGER_MS": "soon"})
    assert result.returncode == 2 and "OOMSTREAM_SINKS_KAFKA_LINGER_MS" in result.stderr


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
        "--sources-enabled", "files", "--sources-files-paths", SAMPLE,
        env={
            "OOMSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "OOMSTREAM_SINKS_KAFKA_CONNECT_TIMEOUT_SECONDS": "3",
            "OOMSTREAM_SINKS_KAFKA_REQUEST_TIMEOUT_SECONDS": "3",
            **quiet_env(tmp_path),
        },
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_run_file_source_to_stdout_sink(tmp_path: Path) -> None:
    result = oomstream(*RUN_SAMPLE, env=quiet_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    events = events_of(result)
    assert [e["victim"]["pid"] for e in events if e["victim"]] and all(not e["partial"] for e in events)
    assert list((tmp_path / "s").iterdir()), "no checkpoint written at the end of input"


def test_run_correlates_kernel_kills_with_kubernetes_objects_from_a_file(tmp_path: Path) -> None:
    """Kubernetes objects as JSON lines (what an event exporter writes) beside a kernel log: the
    pod status OOMKilled of the killed container joins the kernel kill's incident, NPD's Event on
    another node is an incident of its own, a garbage line is counted, and nothing is lost."""
    sys.path.insert(0, str(ROOT / "tests"))
    from datetime import UTC, datetime

    from k8sfake.objects import ContainerSpec, make_event, make_pod, terminated

    pod_uid = "069f04fa-7f16-4864-9226-0642f8fc2327"  # from the sample's cgroup path
    container_id = "053c1732d5701f04ac6b4503b2e311684fbbf0d2a984aea75e3a36619edc1c2d"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod = make_pod(
        name="web-0",
        namespace="shop",
        uid=pod_uid,
        node="node-a",
        owner=("StatefulSet", "web"),
        containers=[
            ContainerSpec(
                "app",
                restart_count=1,
                last_state=terminated(container_id=container_id, started_at=now, finished_at=now),
            )
        ],
    )
    npd = make_event(
        reason="OOMKilling",
        message="Memory cgroup out of memory: Killed process 777 (other) total-vm:1kB, anon-rss:1kB",
        involved_name="node-b",
        host="node-b",
        first_timestamp=now,
    )
    objects = tmp_path / "k8s.jsonl"
    objects.write_text(
        json.dumps({"type": "MODIFIED", "object": pod}) + "\nnot json at all\n" + json.dumps(npd) + "\n"
    )
    result = oomstream(
        *RUN_SAMPLE, "--kubernetes-mode", "off", "--kubernetes-objects-files", str(objects),
        "--no-kubernetes-objects-follow", "--log-format", "text",
        env=quiet_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    events = events_of(result)
    by_type: dict[str, list[dict[str, object]]] = {}
    for event in events:
        by_type.setdefault(str(event["type"]), []).append(event)
    (kill,) = by_type["oom_kill"]
    (status,) = by_type["k8s_oom_killed"]
    (npd_signal,) = by_type["k8s_oom_killing"]
    assert isinstance(kill["enrichment"], dict) and kill["enrichment"]["status"] == "disabled"
    assert kill["incident_id"] and status["incident_id"] == kill["incident_id"]
    assert npd_signal["incident_id"] and npd_signal["incident_id"] != kill["incident_id"]
    incidents = {str(i["incident_id"]): i for i in by_type["incident"]}
    assert set(incidents) == {kill["incident_id"], npd_signal["incident_id"]}
    joined = incidents[str(kill["incident_id"])]
    assert joined["visible_in_kubernetes"] is True and joined["kills"] == 1
    assert joined["verdict"] == "pod_limit"
    assert incidents[str(npd_signal["incident_id"])]["verdict"] == "reported_by_kubernetes_only"
    assert "line 2: not JSON" in result.stderr  # the garbage line is reported, not silently dropped


def test_run_names_a_missing_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    result = oomstream(
        *RUN_SAMPLE, "--kubernetes-mode", "kubeconfig", "--kubernetes-kubeconfig-path", str(missing),
        env={"OOMSTREAM_STATE_DIRECTORY": str(tmp_path / "s"), "OOMSTREAM_METRICS_ENABLED": "false"},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"kubernetes.kubeconfig_path = '{missing}': no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_backfill_ends_at_end_of_input_while_the_api_is_unreachable(tmp_path: Path) -> None:
    """The API watch never ends by itself; a run over a finished log must still stop, with the
    kill published (enrichment waits at most pod_wait_seconds)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "f", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "f",
            }
        )
    )
    result = oomstream(
        *RUN_SAMPLE, "--kubernetes-mode", "kubeconfig", "--kubernetes-kubeconfig-path", str(kubeconfig),
        "--kubernetes-pod-wait-seconds", "1", "--log-format", "text",
        env={"OOMSTREAM_STATE_DIRECTORY": str(tmp_path / "s"), "OOMSTREAM_METRICS_ENABLED": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    events = events_of(result)
    (kill,) = [e for e in events if e["type"] == "oom_kill"]
    assert kill["enrichment"]["status"] == "pod_not_found" and kill["kubernetes"] is None
    assert "cannot read node" in result.stderr  # the unreachable API is reported, not hidden


def test_a_literal_sasl_password_reaches_the_kafka_client() -> None:
    """kafka.sasl_password as a value (masked everywhere) must be the password the client uses
    (a glue layer between two options classes once dropped it)."""
    from streamer.config import load_config
    from streamer.kafka import connection_kwargs
    from streamer.sinks.kafka_component import KafkaSinkOptions, options_for_clients

    env = {
        "OOMSTREAM_SINKS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "OOMSTREAM_SINKS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "OOMSTREAM_SINKS_KAFKA_SASL_USERNAME": "oom",
        "OOMSTREAM_SINKS_KAFKA_SASL_PASSWORD": "s3cret",
    }
    # as the sink's build (and the Kafka inputs) hand [sinks.kafka] to the clients
    sink_config = options_for_clients(load_config(None, env, {}).options("sinks.kafka", KafkaSinkOptions))
    assert "s3cret" not in repr(sink_config)
    assert connection_kwargs(sink_config)["sasl_plain_password"] == "s3cret"


def test_run_declares_the_occurrences_of_a_large_count_it_does_not_emit(tmp_path: Path) -> None:
    """`oomstream run` with an objects file holding NPD's Event at count 1074 and a cap of 10: ten
    events, the first declaring 1..1064, one log line saying so; a restart adds nothing."""
    objects = tmp_path / "k8s.jsonl"
    npd = (ROOT / "tests" / "data" / "k8s" / "npd-oomkilling-combined-1074.json").read_text()
    objects.write_text(json.dumps(json.loads(npd)) + "\n")
    args = (
        *RUN_SAMPLE, "--kubernetes-mode", "off", "--kubernetes-objects-files", str(objects),
        "--no-kubernetes-objects-follow", "--kubernetes-max-backfill-occurrences", "10", "--log-format", "text",
    )  # fmt: skip
    result = oomstream(*args, env=quiet_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    signals = [e for e in events_of(result) if e["type"] == "k8s_oom_killing"]
    assert [e["occurrence"] for e in signals] == list(range(1065, 1075))
    assert signals[0]["skipped_occurrences"] == {"first": 1, "last": 1064}
    assert signals[0]["source"]["position"]["line"] == 1
    assert "occurrences 1..1064 are declared in skipped_occurrences" in result.stderr
    assert "bound k8s_backfill_occurrences reached 1064 time(s)" in result.stderr

    again = oomstream(*args, env=quiet_env(tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [e for e in events_of(again) if e["type"] == "k8s_oom_killing"] == []


def test_two_sinks_at_once_the_second_gets_copies(tmp_path: Path) -> None:
    copies = tmp_path / "copies.jsonl"
    result = oomstream(
        "run", "--sinks-enabled", "stdout,file", "--sinks-file-path", str(copies),
        "--sources-enabled", "files", "--no-sources-files-follow", "--sources-files-paths", SAMPLE,
        env=quiet_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    printed = events_of(result)
    assert printed and [json.loads(line) for line in copies.read_text().splitlines()] == printed
