"""cgroup path -> Kubernetes identity, and which cgroup level's memory limit fired.

Input is a memory-cgroup path as the kernel prints it in an OOM report (``task_memcg=``, ``oom_memcg=``,
``Task in X killed as a result of limit of Y``, ``Memory cgroup stats for X:``). Pure: stdlib only, no I/O,
never raises on any input.

Shapes recognised (``<uid>`` = pod UID, ``<id>`` = 64 hex container id)::

    cgroupfs  /kubepods[/burstable|/besteffort]/pod<uid>/<id>               (Guaranteed: no QoS level)
              /kubepods/burstable/pod<uid>/crio-<id>                         (CRI-O)
    systemd   /kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_with_underscores>.slice/
                  cri-containerd-<id>.scope | crio-<id>.scope[/container] | docker-<id>.scope
    colon     .../kubepods-<qos>-pod<uid>.slice:cri-containerd:<id>          (systemd names, no systemd)

Decisions (documented here because callers depend on them):

* **Nested prefixes.** The Kubernetes part may start anywhere (``/lxc.payload.x/``, ``/lxc/39004/ns/``,
  ``/kubelet.slice/kubelet-kubepods.slice/...`` for kind/rootless, ``<prefix>-kubepods...slice`` in
  general). If more than one Kubernetes hierarchy appears (Kubernetes inside a pod), the *innermost* one
  wins: everything before it is treated as prefix, so the identity is that of the container the task
  actually runs in.
* **Walk, then stop.** Levels are read in order (root -> QoS -> pod -> container); the first segment that
  does not fit stops the walk, so ``/kubepods/burstable/pod<bad uid>/<id>`` yields QoS/driver but no pod and
  no container, and ``/kubepods/burstable/pod<uid>/<junk>/<id>`` yields the pod but no container. Segments
  below a container (CRI-O's ``crio-<id>.scope/container``, sub-cgroups made inside a container) keep the
  container.
* **Pod UIDs.** Returned lowercase with dashes (8-4-4-4-12); systemd's ``_`` separators are converted.
  Static pods are the exception: kubelet names their cgroup after the *config hash* (32 lowercase hex, no
  dashes), which is returned unchanged. It equals the mirror pod's ``kubernetes.io/config.hash``
  annotation, not its ``metadata.uid``. Any other UID shape is treated as malformed.
* **Runtime.** ``cri-containerd-`` -> "containerd", ``crio-`` -> "cri-o", ``docker-`` -> "docker" (docker
  or cri-dockerd). A bare ``<id>`` (cgroupfs containerd/docker) gives the container id with runtime None.
  ``crio-conmon-<id>`` is CRI-O's monitor process, not the app: runtime "cri-o", container_id None. A
  sandbox (pause/infra) container cannot be told from an app container by its path and is reported like
  one.
* **Outside Kubernetes** (no kubepods part): pod_uid/qos_class/driver are None and is_kubernetes is False.
  Only plain Docker containers are recognised (``/docker/<id>``, ``docker-<id>.scope``, innermost wins):
  container_id and runtime "docker". Podman/nerdctl/LXC are not identified.
* **Garbage** (None, non-str, empty, longer than PATH_MAX=4096, non-ASCII ids, 63-hex ids...) gives
  fields None for the affected levels, never an exception. Ids and uids are matched with ASCII-only
  classes and lowercased; surrounding whitespace and trailing ``/`` are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

__all__ = ["CgroupIdentity", "LimitScope", "identify", "limit_scope"]

LimitScope = Literal["global", "container", "pod", "qos", "kubepods", "other"]
_Level = Literal["kubepods", "qos", "pod", "container", "other"]


@dataclass(frozen=True, slots=True)
class CgroupIdentity:
    pod_uid: str | None = None  # lowercase 8-4-4-4-12, or 32 hex config hash for static pods
    container_id: str | None = None  # 64 lowercase hex
    runtime: str | None = None  # "containerd" | "cri-o" | "docker" | None
    qos_class: str | None = None  # "Guaranteed" | "Burstable" | "BestEffort" | None
    driver: str | None = None  # "cgroupfs" | "systemd" | None
    is_kubernetes: bool = False


_EMPTY: Final = CgroupIdentity()
_MAX_PATH_LEN: Final = 4096  # PATH_MAX: the kernel prints cgroup paths through a PATH_MAX buffer
_MAX_CACHED_LEN: Final = 1024  # longer (legal but unusual) paths are parsed uncached to bound cache memory

_H: Final = "[0-9a-fA-F]"
_HEX64: Final = f"{_H}{{64}}"
_UID: Final = (
    f"{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}"
    f"|{_H}{{8}}_{_H}{{4}}_{_H}{{4}}_{_H}{{4}}_{_H}{{12}}"
    f"|{_H}{{32}}"
)
# fullmatch'ed against one path segment each
_POD_RE: Final = re.compile(f"pod({_UID})")
_SYSTEMD_RE: Final = re.compile(
    # kubepods[-<qos>][-pod<uid>].slice[:<runtime prefix>:<id>], matched from the first "kubepods" in the
    # segment, which must start it or follow a "-" (parent slices, e.g. kubelet-kubepods-...)
    rf"kubepods(?:-(burstable|besteffort))?(?:-pod({_UID}))?\.slice(?::([^:]*):([^:]*))?"
)
_CONTAINER_RE: Final = re.compile(rf"(cri-containerd|crio|docker)-({_HEX64})(?:\.scope)?|({_HEX64})")
_CONMON_RE: Final = re.compile(rf"crio-conmon-{_HEX64}(?:\.scope)?")
_DOCKER_SCOPE_RE: Final = re.compile(rf"docker-({_HEX64})\.scope")
_HEX64_RE: Final = re.compile(_HEX64)

_RUNTIMES: Final = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker"}
_CGROUPFS_QOS: Final = {"burstable": "Burstable", "besteffort": "BestEffort"}


def _uid(raw: str) -> str:
    return raw.lower().replace("_", "-")


def _normalize(path: object) -> str | None:
    if not isinstance(path, str) or len(path) > _MAX_PATH_LEN:
        return None
    p = path.strip()
    if not p:
        return None
    if len(p) > 1 and p.endswith("/"):
        p = p.rstrip("/") or "/"
    return p


def _analyse(path: str) -> tuple[CgroupIdentity, _Level | None]:
    """Identity of ``path`` plus the level of its last segment (None outside Kubernetes)."""
    driver: str | None = None
    qos: str | None = None
    pod: str | None = None
    cid: str | None = None
    runtime: str | None = None
    level: _Level | None = None
    docker_id: str | None = None
    prev = ""
    for seg in path.split("/"):
        if not seg:
            continue
        if seg == "kubepods":  # cgroupfs root: (re)start here, innermost hierarchy wins
            driver, qos, pod, cid, runtime, level = "cgroupfs", None, None, None, None, "kubepods"
        elif (
            (k := seg.find("kubepods")) >= 0
            and (k == 0 or seg[k - 1] == "-")
            and (m := _SYSTEMD_RE.fullmatch(seg, k)) is not None
            and (m[3] is None or m[2] is not None)
        ):
            # systemd slice names spell out their ancestry, so each one is self-describing (and (re)starts
            # the hierarchy: innermost wins). The colon form (<slice>:<prefix>:<id>) must name a pod.
            driver, cid, runtime = "systemd", None, None
            pod = _uid(m[2]) if m[2] is not None else None
            qos = _CGROUPFS_QOS[m[1]] if m[1] is not None else ("Guaranteed" if pod is not None else None)
            level = "pod" if pod is not None else ("qos" if qos is not None else "kubepods")
            if m[3] is not None:  # <slice>:<prefix>:<id>
                rt = _RUNTIMES.get(m[3])
                if rt is not None and _HEX64_RE.fullmatch(m[4]) is not None:
                    cid, runtime, level = m[4].lower(), rt, "container"
                else:
                    level = "other"
        elif level is None:  # no Kubernetes hierarchy yet: remember the innermost plain docker container
            if (d := _DOCKER_SCOPE_RE.fullmatch(seg)) is not None:
                docker_id = d[1].lower()
            elif prev == "docker" and _HEX64_RE.fullmatch(seg) is not None:
                docker_id = seg.lower()
        elif level == "kubepods" and driver == "cgroupfs":
            if seg in _CGROUPFS_QOS:
                qos, level = _CGROUPFS_QOS[seg], "qos"
            elif (p := _POD_RE.fullmatch(seg)) is not None:
                qos, pod, level = "Guaranteed", _uid(p[1]), "pod"
            else:
                level = "other"
        elif level == "qos" and driver == "cgroupfs":
            if (p := _POD_RE.fullmatch(seg)) is not None:
                pod, level = _uid(p[1]), "pod"
            else:
                level = "other"
        elif level == "pod":
            if (c := _CONTAINER_RE.fullmatch(seg)) is not None:
                if c[3] is not None:
                    cid = c[3].lower()
                else:
                    cid, runtime = c[2].lower(), _RUNTIMES[c[1]]
                level = "container"
            else:
                if _CONMON_RE.fullmatch(seg) is not None:
                    runtime = "cri-o"
                level = "other"
        elif level != "container":  # "other", or a systemd root/QoS slice followed by a non-slice
            level = "other"
        prev = seg
    if driver is None:
        if docker_id is None:
            return _EMPTY, None
        return CgroupIdentity(container_id=docker_id, runtime="docker"), None
    return CgroupIdentity(pod, cid, runtime, qos, driver, True), level


_analyse_cached = lru_cache(maxsize=4096)(_analyse)


def _lookup(path: str) -> tuple[CgroupIdentity, _Level | None]:
    return _analyse_cached(path) if len(path) <= _MAX_CACHED_LEN else _analyse(path)


def identify(path: str | None) -> CgroupIdentity:
    """Pod/container identity of a kernel memory-cgroup path; all-None (not Kubernetes) if unrecognised."""
    p = _normalize(path)
    return _EMPTY if p is None else _lookup(p)[0]


def limit_scope(task_memcg: str | None, oom_memcg: str | None, *, global_oom: bool) -> LimitScope | None:
    """Which level's memory limit fired, from the victim's cgroup and the OOM-ing cgroup.

    * ``global_oom`` -> "global" (whatever the paths say).
    * ``oom_memcg`` missing/empty -> None (unknown).
    * ``oom_memcg`` is a container cgroup (or below one) -> "container"; a pod cgroup -> "pod"; a QoS cgroup
      (``/kubepods/burstable``, ``kubepods-burstable.slice``) -> "qos"; the kubepods root (node allocatable)
      -> "kubepods"; nested prefixes allowed.
    * Anything else -> "other": non-Kubernetes cgroups, unrecognised cgroups inside the Kubernetes tree (e.g.
      ``crio-conmon-<id>.scope``), and any ``oom_memcg`` that is not an ancestor-or-self of ``task_memcg``
      (compared as paths on ``/`` boundaries). If ``task_memcg`` is missing, the ancestry check is skipped.
    """
    if global_oom:
        return "global"
    oom = _normalize(oom_memcg)
    if oom is None:
        return None
    level = _lookup(oom)[1]
    if level is None or level == "other":
        return "other"
    task = _normalize(task_memcg)
    if task is not None and task != oom and not (oom == "/" or task.startswith(oom + "/")):
        return "other"
    return level
