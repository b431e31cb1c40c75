"""deploy/kubernetes/oomstream.yaml against what the code does: the ClusterRole grants every list and
watch the API source opens, the binding reaches the DaemonSet's service account, and the DaemonSet
gives the process its node name and never runs two pods on one node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from k8sfake.client import write_kubeconfig

from parsers.k8s import SignalTracker
from streamer.enrich.pods import PodCache
from streamer.kube.api import KubeApi, KubeApiConfig, describe_request
from streamer.sources.k8s_watch import KubeWatchSource

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "oomstream.yaml"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    loaded = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    assert loaded, "empty manifest"
    return loaded


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def granted(role: dict[str, Any], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in role.get("rules") or []:
        if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
            verbs |= set(rule.get("verbs", []))
    return verbs


def watch_source(tmp_path: Path, **kw: Any) -> KubeWatchSource:
    """Built with the defaults the service uses; the API object is never opened (dummy server)."""
    cfg = write_kubeconfig(tmp_path / "kubeconfig", "https://192.0.2.1:6443")
    api = KubeApi(KubeApiConfig(mode="kubeconfig", kubeconfig_path=str(cfg)))
    return KubeWatchSource(api, node="node-a", cache=PodCache(), tracker=SignalTracker(), **kw)


def test_cluster_role_grants_pods_events_and_nodes(docs: list[dict[str, Any]]) -> None:
    role = one(docs, "ClusterRole")
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert {"get", "list", "watch"} <= granted(role, "", "pods")
    assert {"get", "list", "watch"} <= granted(role, "", "events")
    assert "get" in granted(role, "", "nodes")
    for rule in role["rules"]:
        assert "*" not in rule.get("verbs", []) and "*" not in rule.get("resources", [])
        assert not ({"create", "update", "patch", "delete", "deletecollection"} & set(rule.get("verbs", [])))


@pytest.mark.parametrize("watch_events", [True, False], ids=["pods+events", "pods-only"])
def test_every_watched_path_is_granted_list_and_watch(
    docs: list[dict[str, Any]], tmp_path: Path, watch_events: bool
) -> None:
    role = one(docs, "ClusterRole")
    source = watch_source(tmp_path, watch_events=watch_events)
    paths = [w._path for w in source.watchers]
    assert len(paths) == (2 if watch_events else 1)
    assert "/api/v1/pods" in paths
    for path in paths:
        list_verb, resource, group, namespace = describe_request(path, {})
        watch_verb, *_ = describe_request(path, {"watch": "true"})
        assert (list_verb, watch_verb) == ("list", "watch"), path
        # cluster-wide (no namespace in the path): only a ClusterRole can grant it
        assert namespace is None, path
        verbs = granted(role, group, resource)
        assert {"list", "watch"} <= verbs, f"{path}: {resource!r} in apiGroup {group!r} has only {verbs}"


def test_the_binding_gives_the_role_to_the_daemonsets_service_account(docs: list[dict[str, Any]]) -> None:
    role = one(docs, "ClusterRole")
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    ds = one(docs, "DaemonSet")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"],
    }  # fmt: skip
    sa_name, sa_ns = account["metadata"]["name"], account["metadata"]["namespace"]
    assert {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns} in binding["subjects"]
    assert ds["metadata"]["namespace"] == sa_ns
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == sa_name
    assert ds["spec"]["template"]["spec"].get("automountServiceAccountToken", True) is not False
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["name"] == sa_ns


def test_daemonset_node_name_and_rollout(docs: list[dict[str, Any]]) -> None:
    ds = one(docs, "DaemonSet")
    assert ds["apiVersion"] == "apps/v1"
    spec = ds["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items())

    strategy = spec["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    rolling = strategy["rollingUpdate"]
    # one process per state directory (flock): never a second pod on a node during a rollout
    assert rolling["maxSurge"] == 0
    assert rolling.get("maxUnavailable", 1) not in (0, "0", "0%"), "maxSurge 0 needs maxUnavailable > 0"

    containers = template["spec"]["containers"]
    assert len(containers) == 1
    env = {e["name"]: e for e in containers[0].get("env", [])}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "value" not in env["NODE_NAME"]


def test_service_reads_node_name_from_the_variable_the_manifest_sets(docs: list[dict[str, Any]]) -> None:
    from streamer.config import Config

    ds = one(docs, "DaemonSet")
    names = [e["name"] for c in ds["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])]
    assert "NODE_NAME" in names
    assert Config().resolved_node_name({"NODE_NAME": "node-from-downward-api"}) == "node-from-downward-api"


EVENTS_ADDON = MANIFEST.with_name("oomstream-k8s-events.yaml")


def test_event_sink_rbac_is_an_add_on_granting_exactly_create_and_patch_events(
    docs: list[dict[str, Any]],
) -> None:
    # The base manifest stays read-only (test_cluster_role_grants_pods_events_and_nodes); the Event
    # sink's writes are granted only by the add-on applied with k8s_events in sinks.enabled.
    addon = [d for d in yaml.safe_load_all(EVENTS_ADDON.read_text()) if d is not None]
    role = one(addon, "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]
    binding = one(addon, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    # What the sink sends (POST to the collection, PATCH an object) maps to exactly these verbs.
    from streamer.kube.api import _http_error

    for method, path, verb in (
        ("POST", "/api/v1/namespaces/payments/events", "create"),
        ("PATCH", "/api/v1/namespaces/payments/events/web-1.17f3", "patch"),
    ):
        error = _http_error(403, b"{}", {}, path, {}, method=method)
        assert f"verb {verb!r} on resource 'events'" in str(error)
        assert verb in granted(role, "", "events")
