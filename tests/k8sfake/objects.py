"""Kubernetes objects in the shapes the API server returns (core/v1 Pod, core/v1 Event,
events.k8s.io/v1 Event), for the fake API server and unit tests.

Field names, nesting and value formats follow what ``kubectl get -o json`` prints for a kubelet-
managed pod on a containerd node (v1.29-v1.31): RFC 3339 timestamps with a ``Z``, quantities as
strings ("128Mi"), ``containerID`` as ``<runtime>://<64 hex>``, ownerReferences with
``controller: true``, the ``pod-template-hash`` label on ReplicaSet pods, mirror-pod annotations
on static pods.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ContainerSpec", "make_event", "make_events_k8s_io_event", "make_pod", "terminated"]

RUNTIME_PREFIX = {"containerd": "containerd://", "cri-o": "cri-o://", "docker": "docker://"}


@dataclass
class ContainerSpec:
    name: str
    image: str = "registry.k8s.io/e2e-test-images/agnhost:2.47"
    memory_request: str | None = "64Mi"
    memory_limit: str | None = "128Mi"
    cpu_request: str | None = "50m"
    container_id: str | None = field(default_factory=lambda: secrets.token_hex(32))  # bare hex
    runtime: str = "containerd"
    restart_count: int = 0
    state: dict[str, Any] | None = None  # default: running since started_at
    last_state: dict[str, Any] | None = None  # e.g. terminated("OOMKilled", ...)
    kind: str = "regular"  # regular | init | ephemeral
    started_at: str = "2026-11-27T10:00:00Z"


def terminated(
    reason: str = "OOMKilled",
    *,
    exit_code: int = 137,
    started_at: str = "2026-11-27T10:00:00Z",
    finished_at: str = "2026-11-27T10:05:00Z",
    container_id: str | None = None,
    runtime: str = "containerd",
) -> dict[str, Any]:
    """A ``state.terminated`` / ``lastState.terminated`` block."""
    block: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    if container_id is not None:
        block["containerID"] = RUNTIME_PREFIX[runtime] + container_id
    return {"terminated": block}


def _resources(spec: ContainerSpec) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.cpu_request:
        requests["cpu"] = spec.cpu_request
    if spec.memory_request:
        requests["memory"] = spec.memory_request
    if spec.memory_limit:
        limits["memory"] = spec.memory_limit
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    return resources


def _qos(specs: Sequence[ContainerSpec]) -> str:
    """Simplified kubelet QoS rule (memory only, plus cpu requests as given)."""
    regular = [s for s in specs if s.kind != "ephemeral"]
    if all(not s.memory_request and not s.memory_limit and not s.cpu_request for s in regular):
        return "BestEffort"
    if all(s.memory_limit and (s.memory_request in (None, s.memory_limit)) for s in regular):
        return "Guaranteed"
    return "Burstable"


def _status(spec: ContainerSpec) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "imageID": spec.image.split(":")[0] + "@sha256:" + "ab" * 32,
        "ready": spec.state is None,
        "restartCount": spec.restart_count,
        "started": spec.state is None,
        "state": spec.state if spec.state is not None else {"running": {"startedAt": spec.started_at}},
        "lastState": spec.last_state or {},
    }
    if spec.container_id is not None:
        status["containerID"] = RUNTIME_PREFIX[spec.runtime] + spec.container_id
    return status


def make_pod(
    *,
    name: str,
    namespace: str = "default",
    uid: str | None = None,
    node: str = "node-a",
    containers: Sequence[ContainerSpec] | None = None,
    owner: tuple[str, str] | None = ("ReplicaSet", "auto"),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
    resource_version: str = "1",
    static_config_hash: str | None = None,
    status_reason: str | None = None,
    status_message: str | None = None,
    deletion_timestamp: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Pod. ``owner=("ReplicaSet", "auto")`` names the ReplicaSet of a Deployment
    called after the pod's first dash-separated word, with a ``pod-template-hash`` label.
    ``static_config_hash`` makes it a mirror pod (owner Node, config annotations)."""
    uid = uid or str(uuid.uuid4())
    specs = list(containers) if containers is not None else [ContainerSpec(name="app")]
    pod_labels = dict(labels or {"app.kubernetes.io/name": name.split("-")[0], "app": name.split("-")[0]})
    pod_annotations = dict(annotations or {})
    owner_refs: list[dict[str, Any]] = []
    if static_config_hash is not None:
        pod_annotations.update(
            {
                "kubernetes.io/config.hash": static_config_hash,
                "kubernetes.io/config.mirror": static_config_hash,
                "kubernetes.io/config.seen": "2026-11-27T09:00:00.000000000Z",
                "kubernetes.io/config.source": "file",
            }
        )
        owner_refs.append(
            {"apiVersion": "v1", "controller": True, "kind": "Node", "name": node, "uid": str(uuid.uuid4())}
        )
    elif owner is not None:
        kind, owner_name = owner
        if kind == "ReplicaSet" and owner_name == "auto":
            template_hash = secrets.token_hex(5)[:10]
            owner_name = f"{name.split('-')[0]}-{template_hash}"
            pod_labels["pod-template-hash"] = template_hash
        if kind == "Job":
            pod_labels["job-name"] = owner_name
            pod_labels["batch.kubernetes.io/job-name"] = owner_name
        owner_refs.append(
            {
                "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
                "blockOwnerDeletion": True,
                "controller": True,
                "kind": kind,
                "name": owner_name,
                "uid": str(uuid.uuid4()),
            }
        )
    metadata: dict[str, Any] = {
        "creationTimestamp": "2026-11-27T09:59:50Z",
        "labels": pod_labels,
        "name": name,
        "namespace": namespace,
        "resourceVersion": resource_version,
        "uid": uid,
    }
    if pod_annotations:
        metadata["annotations"] = pod_annotations
    if owner_refs:
        metadata["ownerReferences"] = owner_refs
    if deletion_timestamp is not None:
        metadata["deletionTimestamp"] = deletion_timestamp
        metadata["deletionGracePeriodSeconds"] = 30

    def container_spec(s: ContainerSpec) -> dict[str, Any]:
        return {
            "image": s.image,
            "imagePullPolicy": "IfNotPresent",
            "name": s.name,
            "resources": _resources(s),
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }

    spec: dict[str, Any] = {
        "containers": [container_spec(s) for s in specs if s.kind == "regular"],
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "nodeName": node,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
    }
    init = [container_spec(s) for s in specs if s.kind == "init"]
    if init:
        spec["initContainers"] = init
    ephemeral = [
        container_spec(s) | {"targetContainerName": specs[0].name} for s in specs if s.kind == "ephemeral"
    ]
    if ephemeral:
        spec["ephemeralContainers"] = ephemeral
    status: dict[str, Any] = {
        "conditions": [
            {"lastProbeTime": None, "lastTransitionTime": "2026-11-27T09:59:50Z", "status": "True", "type": t}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "containerStatuses": [_status(s) for s in specs if s.kind == "regular"],
        "hostIP": "10.0.0.11",
        "hostIPs": [{"ip": "10.0.0.11"}],
        "phase": phase,
        "podIP": "10.244.1.23",
        "podIPs": [{"ip": "10.244.1.23"}],
        "qosClass": _qos(specs),
        "startTime": "2026-11-27T09:59:50Z",
    }
    init_status = [_status(s) for s in specs if s.kind == "init"]
    if init_status:
        status["initContainerStatuses"] = init_status
    ephemeral_status = [_status(s) for s in specs if s.kind == "ephemeral"]
    if ephemeral_status:
        status["ephemeralContainerStatuses"] = ephemeral_status
    if status_reason is not None:
        status["reason"] = status_reason
    if status_message is not None:
        status["message"] = status_message
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def make_event(
    *,
    reason: str,
    message: str,
    involved_kind: str = "Node",
    involved_name: str = "node-a",
    involved_namespace: str | None = None,
    involved_uid: str | None = None,
    namespace: str = "default",
    component: str = "kernel-monitor",
    host: str = "node-a",
    count: int = 1,
    first_timestamp: str = "2026-11-27T10:05:00Z",
    last_timestamp: str | None = None,
    event_type: str = "Warning",
    annotations: dict[str, str] | None = None,
    uid: str | None = None,
    resource_version: str = "1",
) -> dict[str, Any]:
    """A core/v1 Event as the legacy recorder writes it (NPD, kubelet)."""
    name = f"{involved_name}.{secrets.token_hex(8)}"
    involved: dict[str, Any] = {"kind": involved_kind, "name": involved_name}
    if involved_kind == "Pod":
        involved["apiVersion"] = "v1"
        involved["namespace"] = involved_namespace or namespace
        involved["uid"] = involved_uid or str(uuid.uuid4())
    else:
        involved["uid"] = involved_uid or involved_name
    metadata: dict[str, Any] = {
        "creationTimestamp": first_timestamp,
        "name": name,
        "namespace": namespace,
        "resourceVersion": resource_version,
        "uid": uid or str(uuid.uuid4()),
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "count": count,
        "eventTime": None,
        "firstTimestamp": first_timestamp,
        "involvedObject": involved,
        "lastTimestamp": last_timestamp or first_timestamp,
        "message": message,
        "metadata": metadata,
        "reason": reason,
        "reportingComponent": component,
        "reportingInstance": host,
        "source": {"component": component, "host": host},
        "type": event_type,
    }


def make_events_k8s_io_event(
    *,
    reason: str,
    note: str,
    regarding_kind: str = "Node",
    regarding_name: str = "node-a",
    regarding_namespace: str | None = None,
    regarding_uid: str | None = None,
    namespace: str = "default",
    controller: str = "kubelet",
    host: str = "node-a",
    event_time: str = "2026-11-27T10:05:00.123456Z",
    series_count: int | None = None,
    last_observed: str | None = None,
    uid: str | None = None,
    resource_version: str = "1",
) -> dict[str, Any]:
    """An events.k8s.io/v1 Event (the new recorder: eventTime, series, regarding, note)."""
    regarding: dict[str, Any] = {"kind": regarding_kind, "name": regarding_name}
    if regarding_kind == "Pod":
        regarding["apiVersion"] = "v1"
        regarding["namespace"] = regarding_namespace or namespace
        regarding["uid"] = regarding_uid or str(uuid.uuid4())
    event: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "action": "Killing" if reason in ("OOMKilling", "SystemOOM") else reason,
        "deprecatedSource": {"component": controller, "host": host},
        "eventTime": event_time,
        "metadata": {
            "creationTimestamp": event_time.split(".")[0] + "Z",
            "name": f"{regarding_name}.{secrets.token_hex(8)}",
            "namespace": namespace,
            "resourceVersion": resource_version,
            "uid": uid or str(uuid.uuid4()),
        },
        "note": note,
        "reason": reason,
        "regarding": regarding,
        "reportingController": controller,
        "reportingInstance": host,
        "type": "Warning",
    }
    if series_count is not None:
        event["series"] = {"count": series_count, "lastObservedTime": last_observed or event_time}
    return event
