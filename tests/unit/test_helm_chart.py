"""The Helm chart, rendered by a real helm (v4) with its default values and with ci/full-values.yaml:
`helm lint --strict`, every object validated offline against the Kubernetes OpenAPI schemas
(kubernetes-validate) and the Prometheus Operator's CRD schemas, the security settings asserted on
the rendered DaemonSet, RBAC following the switches, the ConfigMap read by the service's own
configuration loader, and deploy/kubernetes/oomstream.yaml equal to a fresh rendering."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from helmchart import CHART, DASHBOARD, FULL_VALUES, ROOT, RULES, helm, helm_binary, one, render

from streamer import package_version
from streamer.config import load_config
from streamer.sinks.k8s_events import K8sEventsOptions

pytestmark = pytest.mark.skipif(
    helm_binary() is None, reason="no helm binary: `make helm` builds one into .tools/bin (go install)"
)
KUBERNETES_VERSIONS = ("1.25.0", "1.31.0", "1.37.0")  # the chart's minimum, a common one, the newest
CRD_DIR_GLOB = (
    ".tools/go/pkg/mod/github.com/prometheus-operator/prometheus-operator@*/example/prometheus-operator-crd"
)
VARIANTS = {"default": (), "full": (FULL_VALUES,)}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(*VARIANTS[request.param])


def daemonset_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_strict(variant: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in VARIANTS[variant]:
        args += ["-f", str(path)]
    done = helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == package_version()


def test_every_object_is_valid_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    import kubernetes_validate

    _, docs = rendered
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: the next test
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: {error}"
                )
        checked += 1
    assert checked >= 6


def _unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields the structural schema does not declare (the API server would drop them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    problems: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                problems.append(f"{path}.{key}")
            else:
                problems += _unknown_fields(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += _unknown_fields(item, schema["items"], f"{path}[{i}]")
    return problems


def test_servicemonitor_and_prometheusrule_match_the_operator_crds() -> None:
    import jsonschema

    crd_dirs = sorted(ROOT.glob(CRD_DIR_GLOB))
    if not crd_dirs:
        pytest.skip(
            "Prometheus Operator CRDs not downloaded (`make crd-schemas` fetches them via the Go proxy)"
        )
    docs = render(FULL_VALUES)
    for kind, filename in (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules")):
        crd = yaml.safe_load((crd_dirs[-1] / f"monitoring.coreos.com_{filename}.yaml").read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        doc = one(docs, kind)
        # No metaschema check: the CRDs hold Go regexes ("^(?i)...") that Python's re rejects.
        jsonschema.Draft7Validator(schema).validate(doc)
        assert not _unknown_fields(doc, schema, kind)


def test_prometheusrule_and_dashboard_carry_the_tested_files() -> None:
    docs = render(FULL_VALUES)
    rule = one(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    dashboard = one(docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["oomstream.json"]) == json.loads(DASHBOARD.read_text())


def test_daemonset_security_settings(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    pod = daemonset_pod(docs)
    assert pod.get("hostNetwork", False) is False and pod.get("hostIPC", False) is False
    assert pod["hostPID"] is True  # the pid index reads /proc/<pid>/cgroup (documented)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYSLOG"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Every hostPath is read-only in the container, except the state directory.
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        host_path = volumes[mount["name"]].get("hostPath")
        if host_path is not None and mount["mountPath"] != "/var/lib/oomstream":
            assert mount.get("readOnly") is True, mount
        if volumes[mount["name"]].get("secret") is not None:
            assert mount.get("readOnly") is True, mount


def test_daemonset_runs_on_every_node_with_what_the_service_needs(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    pod = daemonset_pod(docs)
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    config = load_rendered_config(docs)
    assert config.metrics.listen_address == f":{port}"
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    host_paths = {v["hostPath"]["path"]: v["name"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[host_paths["/dev/kmsg"]] == "/dev/kmsg"
    assert mounts[host_paths["/etc/machine-id"]] == "/etc/machine-id"
    assert mounts[host_paths["/var/log/journal"]] == "/var/log/journal"
    state = mounts[host_paths["/var/lib/oomstream"]]
    assert config.state.directory.startswith(state + "/") and config.spool.directory.startswith(state + "/")
    assert container["args"][:1] == ["run"] and container["args"][-1] == "/etc/oomstream/oomstream.toml"


def load_rendered_config(docs: list[dict[str, Any]], tmp: Path | None = None) -> Any:
    """The ConfigMap's TOML through the service's own loader (unknown keys and bad values fail)."""
    text = one(docs, "ConfigMap", "oomstream")["data"]["oomstream.toml"]
    tomllib.loads(text)
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, dir=tmp) as handle:
        handle.write(text)
    try:
        return load_config(handle.name, {})
    finally:
        Path(handle.name).unlink()


def kafka_options(config: Any) -> Any:
    """The Kafka sink's options of a loaded configuration."""
    return config.components["sinks.kafka"]


def test_configmap_carries_the_values(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    variant, docs = rendered
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if variant == "full":
        values_full = yaml.safe_load(FULL_VALUES.read_text())
        values["kafka"] = values_full["kafka"]
        values["enrichment"] = values_full["enrichment"]
    config = load_rendered_config(docs)
    assert list(kafka_options(config).bootstrap_servers) == values["kafka"]["bootstrapServers"]
    assert kafka_options(config).events_topic == values["kafka"]["topics"]["events"]
    assert kafka_options(config).dead_letter_topic == values["kafka"]["topics"]["deadLetter"]
    assert list(kafka_options(config).key_fields) == values["kafka"]["keyFields"]
    assert list(config.kubernetes.label_allowlist) == values["enrichment"]["labelAllowlist"]
    assert list(config.kubernetes.annotation_allowlist) == values["enrichment"]["annotationAllowlist"]
    bounds = values["enrichment"]["bounds"]
    assert config.kubernetes.max_backfill_occurrences == bounds["maxBackfillOccurrences"]
    assert config.kubernetes.max_ledger_signals == bounds["maxLedgerSignals"]
    assert config.kubernetes.mode == "in_cluster"
    # The Event sink (full values) comes after Kafka: Kafka decides delivery, the sink gets copies.
    assert config.sinks.enabled == (("kafka", "k8s_events") if variant == "full" else ("kafka",))
    # The service's whole shutdown budget ends 10 s before the kubelet's SIGKILL.
    grace = daemonset_pod(docs)["terminationGracePeriodSeconds"]
    assert config.pipeline.shutdown_timeout_seconds == grace - 10
    if variant == "full":  # .Values.config is merged last
        assert grace == 45
        assert config.pipeline.pid_index_refresh_seconds == 5 and config.log.level == "WARNING"


def test_a_grace_period_without_room_to_drain_is_refused() -> None:
    done = helm("template", "x", str(CHART), "--set", "terminationGracePeriodSeconds=10")
    assert done.returncode != 0 and "terminationGracePeriodSeconds must be more than 10" in done.stderr


def test_secret_references_reach_the_config_and_the_mounts() -> None:
    docs = render(FULL_VALUES)
    config = load_rendered_config(docs)
    pod = daemonset_pod(docs)
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    password = Path(kafka_options(config).sasl_password_file)
    sasl = mounts[str(password.parent)]["secret"]
    assert sasl["secretName"] == "oomstream-kafka-sasl"
    assert {"key": "password", "path": password.name} in sasl["items"]
    for path, key in (
        (kafka_options(config).ssl_cafile, "ca.crt"),
        (kafka_options(config).ssl_certfile, "tls.crt"),
        (kafka_options(config).ssl_keyfile, "tls.key"),
    ):
        assert Path(path).name == key
        assert mounts[str(Path(path).parent)]["secret"]["secretName"] == "oomstream-kafka-tls"
    # No secret value is in the rendered output, only references.
    assert not [d for d in docs if d["kind"] == "Secret"]


def rules_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]


def test_rbac_is_least_privilege_and_follows_the_switches() -> None:
    default = rules_of(render())
    for rule in default:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert not {"secrets", "configmaps"} & set(rule["resources"])
    assert not [r for r in default if "create" in r["verbs"]]
    with_sink_docs = render(sets=("eventSink.enabled=true",))
    creating = [r for r in rules_of(with_sink_docs) if "create" in r["verbs"]]
    # The Event sink's calls: POST and PATCH of core/v1 Events, nothing more.
    assert creating == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]
    # A ClusterRole of its own (deploy/kubernetes/oomstream-k8s-events.yaml), bound to the pods' account.
    role = one(with_sink_docs, "ClusterRole", "-k8s-events")
    assert role["rules"] == creating
    binding = one(with_sink_docs, "ClusterRoleBinding", "-k8s-events")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = daemonset_pod(with_sink_docs)["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "oomstream"}]
    no_events = rules_of(render(sets=("enrichment.watchEvents=false",)))
    assert all("events" not in r["resources"] for r in no_events)
    off = render(sets=("enrichment.enabled=false",))
    assert not rules_of(off)
    assert daemonset_pod(off)["automountServiceAccountToken"] is False
    assert load_rendered_config(off).kubernetes.mode == "off"


def _configmap_tables(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(one(docs, "ConfigMap", "oomstream")["data"]["oomstream.toml"])


def test_event_sink_switch_adds_the_sink_and_its_options() -> None:
    """eventSink.enabled names "k8s_events" after kafka (the first sink decides delivery) and
    renders [sinks.k8s_events] from the values, which the service loads; off, neither appears."""
    assert "k8s_events" not in one(render(), "ConfigMap", "oomstream")["data"]["oomstream.toml"]
    full = render(FULL_VALUES)
    sinks = _configmap_tables(full)["sinks"]
    assert sinks["enabled"] == ["kafka", "k8s_events"]
    assert sinks["k8s_events"] == {
        "repeat_window_seconds": 300,
        "burst_calls": 10,
        "refill_seconds": 120,
        "queue_events": 5000,
        "reporting_instance": "oomstream-platform",
    }
    options = load_rendered_config(full).components["sinks.k8s_events"]
    assert (options.repeat_window_seconds, options.burst_calls, options.refill_seconds) == (300, 10, 120)
    assert (options.queue_events, options.reporting_instance) == (5000, "oomstream-platform")
    # Values left null keep the sink's own defaults: no key is written for them.
    defaults = render(sets=("eventSink.enabled=true",))
    assert _configmap_tables(defaults)["sinks"]["k8s_events"] == {}
    assert load_rendered_config(defaults).components["sinks.k8s_events"] == K8sEventsOptions()
    done = helm(
        "template", "x", str(CHART), "--set", "eventSink.enabled=true", "--set", "enrichment.enabled=false"
    )
    assert done.returncode != 0 and "eventSink.enabled needs enrichment.enabled" in done.stderr


def test_optional_objects_are_off_by_default_and_on_in_full() -> None:
    kinds = {d["kind"] for d in render()}
    assert kinds == {
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "DaemonSet",
    }
    full = {d["kind"] for d in render(FULL_VALUES)}
    assert {"Namespace", "ServiceMonitor", "PrometheusRule", "Job"} <= full


def test_central_mode_is_refused_until_its_source_exists() -> None:
    done = helm("template", "x", str(CHART), "--set", "central.enabled=true")
    assert done.returncode != 0
    assert "Kafka line source" in done.stderr


@pytest.mark.parametrize(
    ("name", "args"), [("oomstream.yaml", ()), ("oomstream-k8s-events.yaml", ("k8s-events",))]
)
def test_plain_manifests_are_rendered_from_the_chart(name: str, args: tuple[str, ...]) -> None:
    manifest = ROOT / "deploy" / "kubernetes" / name
    fresh = subprocess.run(
        [str(ROOT / "deploy" / "kubernetes" / "render.sh"), *args],
        env={"HELM": helm_binary() or "helm", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert manifest.read_text() == fresh.stdout, f"deploy/kubernetes/{name} is stale: run `make manifests`"
