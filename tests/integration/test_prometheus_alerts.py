"""A real Prometheus server scraping a real `oomstream run` on loopback while real OOM kills happen.

The service reads the real /dev/kmsg and enriches from the fake API server, which serves a pod in
a namespace unique to this run; the kills happen in a memory cgroup whose path carries that pod's
UID and container id, so this test's kills (and only them) carry its namespace and workload labels
(other engineers' kills on the same machine carry other labels or none). Prometheus evaluates the
shipped rule file every second: the kill-rate alert must go pending (it fires after its `for:`),
the "invisible to Kubernetes" alert must fire (the fake API reports no OOMKilled status), and every
Grafana panel query must return series from that Prometheus, and every metric it scraped must be
in the operator's guide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helmchart import DASHBOARD, RULES
from k8sfake.client import write_kubeconfig
from k8sfake.objects import ContainerSpec, make_pod
from oomlab import cgroupfs_parts, container_id, memcg, pod_uid, run_oom

from tests.integration.kafka_broker import consume_all, unique_topic
from tests.integration.service import kafka_settings, kube_settings, start_oomstream
from tests.integration.test_k8s_end_to_end import TOKEN, ThreadedApi

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.usefixtures("kernel_allows_oom"),
]
PORTS = range(52000, 53000)  # this project's port range for test servers
NODE = "node-prom"
KILLS = 5
# What Grafana substitutes before it sends a panel query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "10m", "$instance": ".*"}
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(exclude: tuple[int, ...] = ()) -> int:
    """A free port of this project's range."""
    for port in PORTS:
        if port not in exclude and _free(port):
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as error:
            last = error
        else:
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return alerts


@dataclass
class Running:
    prometheus: Prometheus
    api: ThreadedApi
    service: subprocess.Popen[str]
    kafka_bootstrap: str
    topic: str


@contextlib.contextmanager
def monitored_service(tmp_path: Path, kafka_bootstrap: str, **env: str) -> Iterator[Running]:
    """`oomstream run` (kmsg, the fake API server, ``kafka_bootstrap``) scraped every second by a
    Prometheus server that evaluates the shipped rule file every second."""
    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus server (`make tools` installs Debian's prometheus package)")
    api = ThreadedApi()
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, api.server.url, TOKEN)
    api.call(api.server.upsert, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "spec": {}})
    metrics_port = free_port()
    topic = unique_topic("prom")
    service = start_oomstream(
        tmp_path,
        **kafka_settings(kafka_bootstrap, topic),
        **kube_settings(kubeconfig, NODE),
        OOMSTREAM_METRICS_LISTEN_ADDRESS=f"127.0.0.1:{metrics_port}",
        OOMSTREAM_KUBERNETES_POD_WAIT_SECONDS="5",
        OOMSTREAM_KUBERNETES_INCIDENT_WINDOW_SECONDS="3",
        **env,
    )
    prom_port = free_port(exclude=(metrics_port,))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {"job_name": "oomstream", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    prometheus = Prometheus(f"http://127.0.0.1:{prom_port}", server)
    try:
        wait_until(
            "Prometheus ready",
            lambda: urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2).status == 200,
            30,
        )
        wait_until(
            "oomstream scraped (up == 1)",
            lambda: [s for s in prometheus.query('up{job="oomstream"}') if s["value"][1] == "1"],
            60,
        )
        yield Running(prometheus, api, service, kafka_bootstrap, topic)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=40)
        except subprocess.TimeoutExpired:
            service.kill()
        api.close()


@pytest.fixture
def running(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Running]:
    with monitored_service(tmp_path, kafka_bootstrap) as stack:
        yield stack


def alerts_named(prometheus: Prometheus, name: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a for a in prometheus.alerts()
        if a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items())
    ]  # fmt: skip


def kill_in_a_pod(api: ThreadedApi, namespace: str, deployment: str, kills: int) -> list[int]:
    """``kills`` real OOM kills in the memory cgroup of a pod the fake API server serves."""
    uid, cid = pod_uid(), container_id()
    api.call(
        api.server.upsert,
        make_pod(
            name=f"{deployment}-7d4b9c8f5d-x2x7q", namespace=namespace, uid=uid, node=NODE,
            containers=[ContainerSpec("hog", container_id=cid, memory_request="32Mi", memory_limit="64Mi")],
        ),
    )  # fmt: skip
    time.sleep(2.0)  # the pod watch has it
    killed: list[int] = []
    with memcg(cgroupfs_parts("burstable", uid, cid), 64 << 20) as cgroup:
        for _ in range(kills):
            killed += run_oom(cgroup, comm="hog")
            # The counter's series starts at the first kill: let a scrape see each step.
            time.sleep(1.5)
    return killed


def test_real_kills_raise_the_alerts_and_fill_every_dashboard_panel(running: Running) -> None:
    prometheus, api, service = running.prometheus, running.api, running.service
    kafka_bootstrap, topic = running.kafka_bootstrap, running.topic
    run = secrets.token_hex(4)
    namespace, deployment = f"oomlab-{run}", f"hog{run}"
    mine = f'namespace="{namespace}", workload_kind="Deployment", workload="{deployment}"'
    killed = kill_in_a_pod(api, namespace, deployment, KILLS)
    assert len(killed) >= KILLS, f"expected {KILLS} OOM kills, the kernel reported {killed}"
    assert service.poll() is None, service.communicate()[1][-3000:]

    counted = wait_until(
        f"{KILLS} kills of {namespace} in oomstream_oom_events_total",
        lambda: [s for s in prometheus.query(f"sum(oomstream_oom_events_total{{{mine}}}) >= {KILLS}")],
        60,
    )
    assert float(counted[0]["value"][1]) == len(killed)  # our kills, each counted once

    def kill_rate_alert() -> list[dict[str, Any]]:
        return alerts_named(prometheus, "OomstreamOOMKillRateHigh", namespace=namespace)

    alert = wait_until("OomstreamOOMKillRateHigh pending or firing", kill_rate_alert, 60)[0]
    assert alert["state"] in ("pending", "firing")
    assert alert["labels"]["workload"] == deployment and alert["labels"]["workload_kind"] == "Deployment"
    assert float(alert["value"]) >= 3
    assert alert["annotations"]["summary"].startswith(f"OOM kills in {namespace}/{deployment}:")

    invisible = wait_until(
        "OomstreamKillsInvisibleToKubernetes firing",
        lambda: [
            a
            for a in alerts_named(prometheus, "OomstreamKillsInvisibleToKubernetes")
            if a["state"] == "firing"
        ],
        60,
    )
    assert invisible[0]["labels"]["instance"].startswith("127.0.0.1:")

    # The RSS and limit gauges hold this workload's last kill: the limit is the memcg limit.
    limit = prometheus.query(f"oomstream_oom_last_kill_limit_bytes{{{mine}}}")
    assert float(limit[0]["value"][1]) == 64 << 20
    rss = prometheus.query(f"oomstream_oom_last_kill_rss_bytes{{{mine}}}")
    events = [
        json.loads(r.value) for r in asyncio.run(consume_all(kafka_bootstrap, topic, timeout_seconds=60))
    ]
    ours = sorted(
        (
            e
            for e in events
            if e.get("type") == "oom_kill" and (e.get("kubernetes") or {}).get("namespace") == namespace
        ),
        key=lambda e: e["kernel_time"],
    )
    assert sorted(e["victim"]["pid"] for e in ours) == sorted(killed)
    assert float(rss[0]["value"][1]) == ours[-1]["analysis"]["rss_bytes"] > 0

    empty: list[str] = []
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert not re.search(r"\$\w", expr), f"unsubstituted variable in {expr!r}"
            if not prometheus.query(expr):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "panel queries without series:\n" + "\n".join(empty)
    instances = prometheus.query("count by (instance) (oomstream_build_info)")  # the $instance variable
    assert instances

    # Every metric this real service exposed is in the operator's guide's metrics table.
    names = get_json(
        f"{prometheus.url}/api/v1/label/__name__/values?"
        + urllib.parse.urlencode({"match[]": '{job="oomstream"}'})
    )["data"]
    undocumented = [name for name in names if name.startswith("oomstream_") and not documented(name)]
    assert not undocumented, f"metrics missing from docs/operations.md#metrics: {undocumented}"


def documented(name: str) -> bool:
    """``name`` (a scraped series name) has a row in docs/operations.md's metrics table."""
    rows = set(re.findall(r"^\| `([a-z0-9_/]+)` \|", GUIDE.read_text(), re.MULTILINE))
    if name.endswith("_created"):  # prometheus_client's creation time beside each counter/histogram
        return any(row.startswith(name.removesuffix("_created")) for row in rows)
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in rows or f"{base}_bucket/_count/_sum" in rows


def test_kafka_outage_raises_kafka_unreachable_and_clears_when_kafka_returns(
    tmp_path: Path, local_cluster_prerequisites: None
) -> None:
    """A private broker stopped under the service: the kill is spooled, oomstream_sink_healthy goes
    to 0 and OomstreamKafkaUnreachable goes pending; with the broker back the spool drains, the
    gauge returns to 1 and the alert clears."""
    from tests.integration.kafka_broker import LocalCluster

    # Fixed ports, as the other private-broker tests have (29440-29499: this test's).
    cluster = LocalCluster("oomstream-it-prom-outage", port=29440, controller_port=29490)
    bootstrap = cluster.start()
    try:
        with monitored_service(
            tmp_path, bootstrap,
            OOMSTREAM_SINKS_KAFKA_DELIVERY_TIMEOUT_SECONDS="4", OOMSTREAM_SINKS_KAFKA_REQUEST_TIMEOUT_SECONDS="2",
        ) as stack:  # fmt: skip
            prometheus = stack.prometheus
            time.sleep(3.0)  # connected, topics created
            cluster.stop()
            killed = kill_in_a_pod(stack.api, f"oomlab-{secrets.token_hex(4)}", "outage", 1)
            assert killed
            wait_until(
                "oomstream_sink_healthy == 0", lambda: prometheus.query("oomstream_sink_healthy == 0"), 90
            )
            wait_until("events in the spool", lambda: prometheus.query("oomstream_spool_events > 0"), 30)
            alert = wait_until(
                "OomstreamKafkaUnreachable pending",
                lambda: alerts_named(prometheus, "OomstreamKafkaUnreachable"),
                30,
            )[0]
            assert alert["state"] == "pending"  # `for: 5m`
            cluster.start_node(1)
            wait_until("the spool drained", lambda: prometheus.query("oomstream_spool_events == 0"), 120)
            wait_until(
                "oomstream_sink_healthy == 1", lambda: prometheus.query("oomstream_sink_healthy == 1"), 60
            )
            wait_until(
                "OomstreamKafkaUnreachable cleared",
                lambda: not alerts_named(prometheus, "OomstreamKafkaUnreachable"),
                30,
            )
    finally:
        cluster.stop()
        cluster.clean()
