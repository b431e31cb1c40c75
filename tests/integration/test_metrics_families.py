"""The /metrics of a real `oomstream run` keeps every family, help text and series it had.

``tests/data/golden/metrics-families.txt`` was written by the code *before* the telemetry became
declared per component (issue 11, item 5), from the run below: the service follows a kernel
sample and the bundled Kubernetes objects, publishes to the Kafka broker, and is scraped over
HTTP once its events are out (the run has since gained a side sink and the pid index, whose
series the snapshot does not hold: more is allowed). The run today must expose every family of the snapshot with the
same type and help text, and every series (name and labels; values differ run to run) it had.
More is allowed: new families, new series. Regenerate (after an intended change, saying why in
the commit) with ``OOMSTREAM_GOLDEN_REGENERATE=1``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "data" / "golden" / "metrics-families.txt"
REGENERATE = os.environ.get("OOMSTREAM_GOLDEN_REGENERATE") == "1"
_LISTENING = re.compile(r"metrics endpoint listening on [^ ]*:(\d+)")
# Labels whose values depend on the run (paths, versions), not on the code's telemetry.
_RUN_DEPENDENT = {
    "source": re.compile(r"^(k8s-)?file:.*"),
    "topic": re.compile(r".*"),
    "version": re.compile(r".*"),
}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _value(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _lines(text: str) -> list[str]:
    """One line per family (``family <name> <type> <help>``) and per series (``series <name>
    {labels}``), sorted; run-dependent label values replaced."""
    out = set()
    for family in text_string_to_metric_families(text):
        out.add(f"family {family.name} {family.type} {family.documentation}")
        for sample in family.samples:
            labels = {
                key: "<run>" if key in _RUN_DEPENDENT and _RUN_DEPENDENT[key].match(value) else value
                for key, value in sample.labels.items()
            }
            out.add(f"series {sample.name} {json.dumps(labels, sort_keys=True)}")
    return sorted(out)


def test_run_exposes_every_family_and_series_it_had(tmp_path: Path, kafka_bootstrap: str) -> None:
    objects = tmp_path / "objects.jsonl"
    with objects.open("w") as out:
        for path in sorted((ROOT / "tests" / "data" / "k8s").glob("*.json")):
            out.write(json.dumps(json.loads(path.read_text()), separators=(",", ":")) + "\n")
    sample = ROOT / "streamer" / "samples" / "6.18-pod-limit.dmesg"
    topic = f"tel-metrics-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OOMSTREAM_")}
    env.update(
        OOMSTREAM_STATE_DIRECTORY=str(tmp_path / "state"),
        OOMSTREAM_SPOOL_DIRECTORY=str(tmp_path / "spool"),
        OOMSTREAM_KAFKA_BOOTSTRAP=kafka_bootstrap,
        TZ="UTC",
    )
    process = subprocess.Popen(
        [
            sys.executable, "-m", "streamer.cli", "run", "--log-format", "text",
            "--sources-enabled", "files", "--sources-files-paths", str(sample),
            "--sinks-enabled", "kafka,file", "--sinks-kafka-events-topic", topic,
            "--sinks-kafka-dead-letter-topic", topic + ".dlq", "--sinks-file-path", str(tmp_path / "copy.jsonl"),
            "--metrics-listen-address", "127.0.0.1:0", "--pipeline-pid-index-enabled",
            "--kubernetes-mode", "off", "--kubernetes-objects-files", str(objects),
            "--node-name", "node-a", "--pipeline-linger-seconds", "0.2",
        ],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = 0
        for line in process.stderr:
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the service never said where its metrics endpoint listens"
        deadline = time.monotonic() + 60
        text = _scrape(port)
        # Out: the kernel kill and the Kubernetes signals, both delivered to Kafka.
        while (
            _value(text, "oomstream_oom_events_total") < 1 or _value(text, "oomstream_k8s_signals_total") < 1
        ):
            assert time.monotonic() < deadline, "no events after 60 s:\n" + text[-3000:]
            time.sleep(0.3)
            text = _scrape(port)
        time.sleep(1.0)
        text = _scrape(port)
    finally:
        process.terminate()
        process.wait(timeout=30)
    actual = _lines(text)
    if REGENERATE:
        SNAPSHOT.write_text("\n".join(actual) + "\n")
    expected = SNAPSHOT.read_text().splitlines()
    missing = sorted(set(expected) - set(actual))
    assert not missing, "the run no longer exposes:\n" + "\n".join(missing)
    # Added since the snapshot (the run then had no side sink and no pid index): their declared
    # tallies, visible from zero.
    for series in (
        'series oomstream_side_sinks_total {"name": "file_dropped"}',
        'series oomstream_pid_index_total {"name": "scans"}',
        'series oomstream_pipeline_total {"name": "spool_errors"}',
        'series oomstream_parse_errors_total {"reason": "not_kernel"}',
    ):
        assert series in actual, series
