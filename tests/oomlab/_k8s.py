"""Kubernetes-shaped cgroup names (cgroupfs and systemd drivers) for realistic test paths."""

from __future__ import annotations

import secrets
import uuid
from typing import Literal

__all__ = ["QoS", "Runtime", "cgroupfs_parts", "container_id", "pod_uid", "systemd_parts"]

QoS = Literal["guaranteed", "burstable", "besteffort"]
Runtime = Literal["cri-containerd", "crio", "docker"]


def pod_uid() -> str:
    """A random pod UID as the API server prints it (UUID with dashes)."""
    return str(uuid.uuid4())


def container_id() -> str:
    """A random 64-hex-digit container id."""
    return secrets.token_hex(32)


def cgroupfs_parts(qos: QoS, uid: str, cid: str, prefix: tuple[str, ...] = ()) -> list[str]:
    """kubelet ``cgroupDriver: cgroupfs`` layout.

    ``/kubepods/pod<uid>/<cid>`` for Guaranteed, ``/kubepods/<qos>/pod<uid>/<cid>`` otherwise.
    """
    parts = [*prefix, "kubepods"]
    if qos != "guaranteed":
        parts.append(qos)
    return [*parts, f"pod{uid}", cid]


def systemd_parts(
    qos: QoS, uid: str, cid: str, runtime: Runtime = "cri-containerd", prefix: tuple[str, ...] = ()
) -> list[str]:
    """kubelet ``cgroupDriver: systemd`` layout (dashes in the pod UID become underscores).

    ``/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/<runtime>-<cid>.scope``;
    Guaranteed pods sit directly in ``kubepods.slice`` as ``kubepods-pod<uid_>.slice``.
    """
    u = uid.replace("-", "_")
    parts = [*prefix, "kubepods.slice"]
    if qos == "guaranteed":
        parts.append(f"kubepods-pod{u}.slice")
    else:
        parts += [f"kubepods-{qos}.slice", f"kubepods-{qos}-pod{u}.slice"]
    return [*parts, f"{runtime}-{cid}.scope"]
