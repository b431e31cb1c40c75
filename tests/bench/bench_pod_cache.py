"""Memory and speed of the node's pod cache (streamer/enrich/pods.py), 110 pods by default.

The pods are the k8sfake Pods plus what a real API server returns on top of them and the fake leaves
out: managedFields, env, probes, volumes and mounts, tolerations, Helm and mesh labels/annotations
(including an Istio ``sidecar.istio.io/status`` and a ``kubectl.kubernetes.io/last-applied-configuration``
on some). Memory is measured with tracemalloc as what stays allocated once the API objects are gone;
the baseline is the same objects kept as parsed JSON dicts (what caching the raw objects would cost),
measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import secrets
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for k8sfake

from k8sfake.objects import ContainerSpec, make_pod, terminated

from streamer.enrich.pods import PodCache, bare_container_id

APPS = ["checkout", "cart", "payments", "search", "ingest", "api", "web", "worker", "auth", "billing", "feed"]


def _managed_fields(pod: dict[str, Any]) -> list[dict[str, Any]]:
    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {f"f:{k}": shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return {"k:{}": {".": {}}}
        return {}

    return [
        {
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": shape(pod["metadata"]), "f:spec": shape(pod["spec"])},
            "manager": "kube-controller-manager",
            "operation": "Update",
            "time": "2026-11-27T09:59:50Z",
        },
        {
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": shape(pod["status"])},
            "manager": "kubelet",
            "operation": "Update",
            "subresource": "status",
            "time": "2026-11-27T10:00:01Z",
        },
    ]


def realistic_pod(n: int, rng: random.Random) -> dict[str, Any]:
    app = APPS[n % len(APPS)]
    kind = rng.choice(["deploy", "deploy", "deploy", "sts", "ds", "job"])
    owner: tuple[str, str] | None = ("ReplicaSet", "auto")
    name = f"{app}-{secrets.token_hex(5)[:10]}-{secrets.token_hex(3)[:5]}"
    if kind == "sts":
        owner, name = ("StatefulSet", app), f"{app}-{n}"
    elif kind == "ds":
        owner, name = ("DaemonSet", app), f"{app}-{secrets.token_hex(3)[:5]}"
    elif kind == "job":
        owner, name = ("Job", f"{app}-29012345"), f"{app}-29012345-{secrets.token_hex(3)[:5]}"
    labels = {
        "app": app,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": f"{app}-prod",
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/version": "1.27.3",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{app}-4.2.0",
        "team": "payments",
        "security.istio.io/tlsMode": "istio",
        "service.istio.io/canonical-name": app,
        "service.istio.io/canonical-revision": "1.27.3",
    }
    annotations = {
        "checksum/config": secrets.token_hex(32),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "kubectl.kubernetes.io/restartedAt": "2026-11-20T08:00:00Z",
        "kubectl.kubernetes.io/default-container": "app",
        "sidecar.istio.io/status": json.dumps(
            {
                "initContainers": ["istio-init"],
                "containers": ["istio-proxy"],
                "volumes": ["istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
                "imagePullSecrets": None,
                "revision": "default",
            }
        ),
        "k8s.v1.cni.cncf.io/network-status": json.dumps(
            [{"name": "cilium", "interface": "eth0", "ips": ["10.244.1.23"], "default": True, "dns": {}}]
        ),
    }
    if n % 4 == 0:
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {"x": "y" * 600},
            }
        )
    specs = [
        ContainerSpec(
            "app",
            image=f"registry.example.com/shop/{app}:1.27.3",
            memory_request="256Mi",
            memory_limit="512Mi",
            restart_count=n % 3,
            last_state=terminated(container_id=secrets.token_hex(32)) if n % 3 else None,
        ),
        ContainerSpec(
            "istio-proxy", image="docker.io/istio/proxyv2:1.22.1", memory_request="128Mi", memory_limit="1Gi"
        ),
        ContainerSpec(
            "istio-init",
            kind="init",
            image="docker.io/istio/proxyv2:1.22.1",
            memory_limit="1Gi",
            state=terminated("Completed", exit_code=0),
        ),
    ]
    pod = make_pod(
        name=name, namespace="shop", owner=owner, labels=labels, annotations=annotations, containers=specs
    )
    env = [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 20} for i in range(15)]
    env.append(
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}
    )
    probe = {
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "periodSeconds": 10,
        "timeoutSeconds": 1,
    }
    mounts = [
        {"mountPath": f"/var/run/{v}", "name": v, "readOnly": True} for v in ("config", "secrets", "token")
    ]
    for container in pod["spec"]["containers"]:
        container.update(
            env=env,
            livenessProbe=probe,
            readinessProbe=probe,
            volumeMounts=mounts,
            ports=[{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        )
    pod["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
        {"name": "secrets", "secret": {"secretName": f"{app}-secrets", "defaultMode": 420}},
        {
            "name": "token",
            "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]},
        },
    ]
    pod["spec"]["tolerations"] = [
        {
            "effect": "NoExecute",
            "key": f"node.kubernetes.io/{t}",
            "operator": "Exists",
            "tolerationSeconds": 300,
        }
        for t in ("not-ready", "unreachable")
    ]
    pod["metadata"]["managedFields"] = _managed_fields(pod)
    return pod


def retained(build: Any) -> tuple[int, Any]:
    """Bytes still allocated after ``build()`` (its temporaries freed), and its result."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, result


def per_call_ns(fn: Any, args: list[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for kwargs in args:
            fn(**kwargs)
        best = min(best, (time.perf_counter_ns() - start) / len(args))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=110, help="pods on the node (kubelet default max: 110)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pods = [realistic_pod(n, rng) for n in range(args.pods)]
    wire = json.dumps({"items": pods}).encode()  # what a list response carries
    print(f"pod cache, {args.pods} pods, {len(wire) / args.pods / 1024:.1f} KiB of JSON per pod on the wire")

    raw_bytes, raw = retained(lambda: json.loads(wire)["items"])
    del raw

    def build_cache() -> PodCache:
        cache = PodCache()
        cache.replace(json.loads(wire)["items"], "1")  # the parsed list is dropped after this
        return cache

    cache_bytes, cache = retained(build_cache)
    print(
        f"  memory: raw dicts {raw_bytes / args.pods / 1024:.1f} KiB/pod ({raw_bytes / 2**20:.2f} MiB), "
        f"cache {cache_bytes / args.pods / 1024:.2f} KiB/pod ({cache_bytes / 2**20:.3f} MiB): "
        f"{raw_bytes / max(cache_bytes, 1):.0f}x smaller"
    )

    # steady state: every pod updated 10 times (status churn, a restart on every third pod)
    updates = []
    for round_ in range(10):
        for n, pod in enumerate(pods):
            update = copy.deepcopy(pod)
            if n % 3 == 0:
                status = update["status"]["containerStatuses"][0]
                status["lastState"] = terminated(container_id=bare_container_id(status["containerID"]))
                status["containerID"] = "containerd://" + secrets.token_hex(32)
                status["restartCount"] += round_ + 1
                pod["status"]["containerStatuses"][0] = status
            updates.append(update)
    grown, _ = retained(lambda: [cache.apply("MODIFIED", update) for update in updates] and None)
    timed = build_cache()
    start = time.perf_counter()
    for update in updates:
        timed.apply("MODIFIED", update)
    apply_us = (time.perf_counter() - start) / len(updates) * 1e6
    print(
        f"  {len(updates)} MODIFIED events (a restart on every third pod each round): {apply_us:.0f} us/event; "
        f"cache grew {grown / args.pods:.0f} B/pod (earlier container ids, at most 8 per container)"
    )
    start = time.perf_counter()
    build_cache()
    print(
        f"  relist of {args.pods} pods: {(time.perf_counter() - start) * 1000:.1f} ms (json parse included)"
    )

    infos = cache.pods()
    by_cid = [
        {"pod_uid": info.uid, "container_id": c.container_id}
        for info in infos
        for c in info.containers
        if c.container_id is not None
    ]
    by_previous = [
        {"pod_uid": None, "container_id": cid}
        for info in infos
        for c in info.containers
        for cid in c.previous_ids
    ]
    by_uid = [{"pod_uid": info.uid, "container_id": None} for info in infos]
    misses = [
        {"pod_uid": "6d1c7a1e-0000-4000-8000-000000000000", "container_id": secrets.token_hex(32)}
    ] * 200
    for label, calls in (
        ("container id (current)", by_cid),
        ("container id (earlier)", by_previous),
        ("pod uid only", by_uid),
        ("miss", misses),
    ):
        if calls:
            ns = per_call_ns(cache.lookup, calls, args.rounds)
            print(f"  lookup by {label}: {ns:.0f} ns/call over {len(calls)} keys")


if __name__ == "__main__":
    main()
