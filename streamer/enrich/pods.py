"""The node's pod cache: compact records of the pods on this node, fed by a list+watch loop.

The list+watch client calls :meth:`PodCache.replace` with the full list after every (re)list and
:meth:`PodCache.apply` for every watch event; the enricher calls :meth:`PodCache.lookup` with what
the OOM report's cgroup path gives (pod UID, container id).

What is kept, and why:

* **Compact records, not API objects.** A Pod object is 5-15 KB of JSON and several times that as
  Python dicts (managedFields, conditions, probes, env...). :class:`PodInfo` keeps only what an event
  needs; labels and annotations only for allowlisted keys. Repeated strings (namespace, node, image,
  label keys) are interned. tests/bench/bench_pod_cache.py measures it.
* **Three indexes.** API UID -> pod; container id -> pod (current ids, the ids of earlier instances
  of each container from ``lastState.terminated.containerID`` and from ids replaced across updates,
  for regular, init and ephemeral containers); static-pod config hash -> pod, because the kubelet
  names a static pod's cgroup after its config hash, not after the mirror pod's API UID.
* **Tombstones.** A deleted pod (DELETED event, or missing from a relist) stays findable for
  ``tombstone_seconds``: an OOM kill in a short-lived Job pod is often read after the pod is gone.
  Tombstones are also capped in number (``max_tombstones``), oldest dropped first.
* **Never raises on input.** A malformed object is counted (``counts["bad_object"]``) and skipped;
  an unparsable memory quantity becomes None and is counted (``counts["bad_quantity"]``).

Not thread-safe: every method must be called from the event loop's thread (the watch loop and the
enricher both run there).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from parsers.k8s import parse_container_id
from parsers.telemetry import Count, Tally, Telemetry
from streamer.config import DEFAULT_LABEL_ALLOWLIST
from streamer.enrich.quantity import parse_quantity

# oomstream_source_counts_total{source="pod-cache",name}.
POD_CACHE_TELEMETRY = Telemetry(
    "pod-cache",
    (
        Count("relist", "full relists applied"),
        Count("deleted_by_relist", "pods gone at a relist"),
        Count("event_{}", "watch events, by type (ADDED, MODIFIED, DELETED; unknown)"),
        Count("bad_object", "pod objects missing what the cache needs"),
        Count("bad_quantity", "memory quantities that did not parse"),
        Count("{}_keys_not_copied", "label or annotation keys left out by the allowlist"),
        Count("label_keys_not_copied", "label keys left out by label_allowlist"),
        Count("annotation_keys_not_copied", "annotation keys left out by annotation_allowlist"),
        Count("resurrected", "deleted pods seen alive again"),
        Count("tombstones_expired", "deleted pods forgotten after tombstone_seconds"),
        Count("tombstones_over_cap", "deleted pods forgotten at the cap", bound="pod_tombstones"),
        Count(
            "previous_ids_forgotten",
            "earlier container ids forgotten",
            bound="container_previous_ids",
        ),
    ),
)

__all__ = [
    "ContainerInfo",
    "PodCache",
    "PodInfo",
    "PodMatch",
    "bare_container_id",
    "derive_workload",
]

log = logging.getLogger(__name__)

CONFIG_HASH_ANNOTATION: Final = "kubernetes.io/config.hash"
CONFIG_MIRROR_ANNOTATION: Final = "kubernetes.io/config.mirror"
MAX_PREVIOUS_IDS: Final = 8  # per container: a crash-looping container would otherwise grow without bound
MAX_KEYS_NOT_COPIED: Final = 1000  # distinct label (or annotation) keys remembered as not copied

ContainerKind = Literal["regular", "init", "ephemeral"]
MatchVia = Literal["pod_uid", "container_id", "config_hash"]

_CRONJOB_JOB_RE: Final = re.compile(r"(.+)-([0-9]{8,})")  # <cronjob>-<scheduled time in minutes>
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
_KINDS: Final[tuple[tuple[ContainerKind, str, str], ...]] = (
    ("regular", "containers", "containerStatuses"),
    ("init", "initContainers", "initContainerStatuses"),
    ("ephemeral", "ephemeralContainers", "ephemeralContainerStatuses"),
)
_EMPTY: Final[Mapping[str, str]] = {}


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    name: str
    kind: ContainerKind
    container_id: str | None  # bare id (no "<runtime>://"), lowercase
    previous_ids: tuple[str, ...]  # earlier instances of this container, oldest first
    image: str | None
    memory_request_bytes: int | None
    memory_limit_bytes: int | None
    restart_count: int | None


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str  # the API UID (for a static pod: the mirror pod's)
    node: str | None
    qos_class: str | None
    labels: Mapping[str, str]  # allowlisted keys only; do not mutate
    annotations: Mapping[str, str]  # allowlisted keys only; do not mutate
    owner: tuple[str, str] | None  # (kind, name) of the controller ownerReference
    workload: tuple[str, str] | None  # (kind, name): Deployment, CronJob, StatefulSet, ...
    containers: tuple[ContainerInfo, ...]
    config_hash: str | None  # static pods: the kubelet's config hash (the cgroup's "pod UID")
    pod_memory_limit_bytes: int | None  # the pod cgroup's limit as the kubelet sets it, else None
    deleted_at: float | None = None  # cache clock time of deletion (a tombstone), else None

    @property
    def static(self) -> bool:
        return self.config_hash is not None or (self.owner is not None and self.owner[0] == "Node")

    def container_by_id(self, container_id: str) -> ContainerInfo | None:
        for container in self.containers:
            if container.container_id == container_id or container_id in container.previous_ids:
                return container
        return None


@dataclass(frozen=True, slots=True)
class PodMatch:
    pod: PodInfo
    container: ContainerInfo | None  # None when only the pod matched
    via: MatchVia
    deleted: bool


def bare_container_id(value: object) -> str | None:
    """``containerd://<64 hex>`` -> ``<64 hex>``; None for anything else (empty, waiting containers)."""
    if not isinstance(value, str):
        return None
    bare = (parse_container_id(value)[1] or "").strip().lower()
    return bare if _HEX64_RE.fullmatch(bare) is not None else None


def derive_workload(owner: tuple[str, str] | None, labels: Mapping[str, Any]) -> tuple[str, str] | None:
    """The workload a pod belongs to, from its controller owner (and, for ReplicaSets, its labels).

    ReplicaSet -> Deployment when the ReplicaSet name ends in ``-<pod-template-hash label>``; Job ->
    CronJob when the Job name is ``<cronjob>-<8+ digits>`` (the CronJob controller's scheduled-time
    suffix); Node (a static pod's mirror) -> None; any other controller (StatefulSet, DaemonSet,
    ReplicationController, custom kinds) as is.
    """
    if owner is None:
        return None
    kind, name = owner
    if kind == "Node":
        return None
    if kind == "ReplicaSet":
        template_hash = labels.get("pod-template-hash")
        if isinstance(template_hash, str) and template_hash and name.endswith("-" + template_hash):
            deployment = name[: -len(template_hash) - 1]
            if deployment:
                return ("Deployment", deployment)
        return owner
    if kind == "Job":
        m = _CRONJOB_JOB_RE.fullmatch(name)
        if m is not None:
            return ("CronJob", m[1])
        return owner
    return owner


def _intern(value: object) -> str | None:
    return sys.intern(value) if isinstance(value, str) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _pick(source: object, allowlist: tuple[str, ...]) -> Mapping[str, str]:
    """The allowlisted string entries of ``source``; keys are the allowlist's own (shared) strings."""
    if not allowlist or not isinstance(source, dict) or not source:
        return _EMPTY
    picked = {key: value for key in allowlist if isinstance(value := source.get(key), str)}
    return picked or _EMPTY


def _owner(metadata: dict[str, Any]) -> tuple[str, str] | None:
    refs = [ref for ref in _list(metadata.get("ownerReferences")) if isinstance(ref, dict)]
    chosen = next((ref for ref in refs if ref.get("controller") is True), refs[0] if refs else None)
    if chosen is None:
        return None
    kind, name = _str(chosen.get("kind")), _str(chosen.get("name"))
    if kind is None or name is None:
        return None
    return (sys.intern(kind), name)


class PodCache:
    """Pods of this node, indexed for OOM attribution. The list+watch loop's WatchHandler."""

    def __init__(
        self,
        *,
        tombstone_seconds: float = 600.0,
        label_allowlist: Sequence[str] = DEFAULT_LABEL_ALLOWLIST,
        annotation_allowlist: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        source: str = "api_watch",
        max_tombstones: int = 5000,
    ) -> None:
        self.tombstone_seconds = tombstone_seconds
        self.label_allowlist = tuple(sys.intern(key) for key in dict.fromkeys(label_allowlist))
        self.annotation_allowlist = tuple(sys.intern(key) for key in dict.fromkeys(annotation_allowlist))
        self.clock = clock
        self.source = source
        self.max_tombstones = max_tombstones
        self.synced = False
        self.resource_version: str | None = None
        self.counts: Tally = POD_CACHE_TELEMETRY.tally()
        self._pods: dict[str, PodInfo] = {}  # API UID -> pod (live and tombstones)
        self._by_container: dict[str, str] = {}  # bare container id -> API UID
        self._by_hash: dict[str, str] = {}  # static pod config hash -> API UID
        self._tombstones: dict[str, float] = {}  # API UID -> deleted_at, in deletion order
        self._changed: asyncio.Event | None = None
        # Label / annotation keys seen on pods but not copied onto events (not allowlisted): each
        # is counted and logged once, so a user sees what the allowlists leave out.
        self._not_copied: dict[str, set[str]] = {"label": set(), "annotation": set()}

    # -- WatchHandler -------------------------------------------------------------------------------

    def replace(self, objects: list[dict[str, Any]], resource_version: str) -> None:
        """The full state after a (re)list: pods not in it become tombstones."""
        self.counts["relist"] += 1
        seen: set[str] = set()
        for obj in objects if isinstance(objects, list) else ():
            pod = self._extract(obj)
            if pod is None:
                continue
            seen.add(pod.uid)
            self._upsert(pod)
        now = self.clock()
        for uid, pod in list(self._pods.items()):
            if uid not in seen and pod.deleted_at is None:
                self._upsert(replace(pod, deleted_at=now))
                self.counts["deleted_by_relist"] += 1
        self.resource_version = resource_version if isinstance(resource_version, str) else None
        self.synced = True
        self._expire(now)
        self._notify()

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED (BOOKMARK and ERROR are counted and ignored)."""
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            known = event_type in ("BOOKMARK", "ERROR")
            self.counts[f"event_{event_type}" if known else "event_unknown"] += 1
            return
        self.counts[f"event_{event_type}"] += 1
        pod = self._extract(obj)
        if pod is None:
            return
        now = self.clock()
        # A DELETED event carries the final state, which names the last container ids.
        self._upsert(replace(pod, deleted_at=now) if event_type == "DELETED" else pod)
        self._expire(now)
        self._notify()

    # -- queries ------------------------------------------------------------------------------------

    def lookup(self, *, pod_uid: str | None, container_id: str | None) -> PodMatch | None:
        """By container id first (current or earlier ids), then the pod UID as an API UID, then as a
        static pod's config hash. The container is None when only the pod matched."""
        if container_id:
            uid = self._by_container.get(container_id.lower())
            pod = self._pods.get(uid) if uid is not None else None
            if pod is not None:
                container = pod.container_by_id(container_id.lower())
                return PodMatch(pod, container, "container_id", pod.deleted_at is not None)
        if pod_uid:
            key = pod_uid.lower()
            pod = self._pods.get(key)
            if pod is not None:
                return PodMatch(pod, None, "pod_uid", pod.deleted_at is not None)
            uid = self._by_hash.get(key)
            pod = self._pods.get(uid) if uid is not None else None
            if pod is not None:
                return PodMatch(pod, None, "config_hash", pod.deleted_at is not None)
        return None

    def get(self, uid: str) -> PodInfo | None:
        return self._pods.get(uid)

    def pods(self) -> list[PodInfo]:
        return list(self._pods.values())

    def __len__(self) -> int:
        """Pods known, tombstones included."""
        return len(self._pods)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    def expire(self) -> int:
        """Drop tombstones older than tombstone_seconds; returns how many were dropped."""
        return self._expire(self.clock())

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait until the cache changes (replace/apply), at most ``timeout`` seconds; True if it did."""
        if timeout <= 0:
            return False
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- internals ----------------------------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None  # waiters hold the set event; the next wait gets a fresh one

    def _extract(self, obj: object) -> PodInfo | None:
        try:
            return self._extract_unchecked(obj)
        except Exception:  # a malformed object must never take the watch loop down
            log.debug("pod object skipped", exc_info=True)
            self.counts["bad_object"] += 1
            return None

    def _quantity(self, resources: object, section: str) -> int | None:
        raw = _dict(_dict(resources).get(section)).get("memory")
        if raw is None:
            return None
        value = parse_quantity(raw)
        if value is None:
            self.counts["bad_quantity"] += 1
        return value

    def _extract_unchecked(self, obj: object) -> PodInfo | None:
        if not isinstance(obj, dict):
            self.counts["bad_object"] += 1
            return None
        metadata, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
        uid, name = _str(metadata.get("uid")), _str(metadata.get("name"))
        namespace = _str(metadata.get("namespace"))
        if uid is None or name is None or namespace is None:
            self.counts["bad_object"] += 1
            return None
        labels_raw = _dict(metadata.get("labels"))
        annotations_raw = _dict(metadata.get("annotations"))
        owner = _owner(metadata)
        config_hash = _str(annotations_raw.get(CONFIG_HASH_ANNOTATION)) or _str(
            annotations_raw.get(CONFIG_MIRROR_ANNOTATION)
        )

        containers: list[ContainerInfo] = []
        limits: dict[ContainerKind, list[tuple[int | None, bool]]] = {"regular": [], "init": []}
        for kind, spec_key, status_key in _KINDS:
            statuses = {
                st["name"]: st
                for st in _list(status.get(status_key))
                if isinstance(st, dict) and isinstance(st.get("name"), str)
            }
            for c in _list(spec.get(spec_key)):
                if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                    continue
                st = statuses.get(c["name"], {})
                resources = c.get("resources")
                request = self._quantity(resources, "requests")
                limit = self._quantity(resources, "limits")
                if kind != "ephemeral":
                    sidecar = kind == "init" and c.get("restartPolicy") == "Always"
                    limits[kind].append((limit, sidecar))
                current = bare_container_id(st.get("containerID"))
                earlier = [
                    bare_container_id(_dict(_dict(st.get(state)).get("terminated")).get("containerID"))
                    for state in ("lastState", "state")
                ]
                previous = tuple(cid for cid in dict.fromkeys(earlier) if cid is not None and cid != current)
                restarts = st.get("restartCount")
                if not isinstance(restarts, int) or isinstance(restarts, bool):
                    restarts = None
                containers.append(
                    ContainerInfo(
                        name=sys.intern(c["name"]),
                        kind=kind,
                        container_id=current,
                        previous_ids=previous,
                        image=_intern(_str(c.get("image")) or _str(st.get("image"))),
                        memory_request_bytes=request,
                        memory_limit_bytes=limit,
                        restart_count=restarts,
                    )
                )
        overhead = self._quantity({"overhead": spec.get("overhead")}, "overhead")
        return PodInfo(
            namespace=sys.intern(namespace),
            name=name,
            uid=uid.lower(),
            node=_intern(_str(spec.get("nodeName"))),
            qos_class=_intern(_str(status.get("qosClass"))),
            labels=self._allowed("label", labels_raw, self.label_allowlist),
            annotations=self._allowed("annotation", annotations_raw, self.annotation_allowlist),
            owner=owner,
            workload=derive_workload(owner, labels_raw),
            containers=tuple(containers),
            config_hash=config_hash.lower() if config_hash is not None else None,
            pod_memory_limit_bytes=_pod_limit(limits["regular"], limits["init"], overhead),
        )

    def _allowed(self, kind: str, source: dict[str, Any], allowlist: tuple[str, ...]) -> Mapping[str, str]:
        """The allowlisted entries of ``source``; a key left out for the first time is counted
        (``<kind>_keys_not_copied``, at most MAX_KEYS_NOT_COPIED distinct keys remembered) and logged."""
        picked = _pick(source, allowlist)
        if len(source) > len(picked):
            seen = self._not_copied[kind]
            new = [key for key in source if key not in picked and key not in seen]
            if new and len(seen) < MAX_KEYS_NOT_COPIED:
                new = new[: MAX_KEYS_NOT_COPIED - len(seen)]
                seen.update(new)
                self.counts[f"{kind}_keys_not_copied"] += len(new)
                log.info(
                    "pod %s keys not copied onto events (not in kubernetes.%s_allowlist): %s",
                    kind, kind, ", ".join(sorted(new)),
                )  # fmt: skip
        return picked

    def _upsert(self, pod: PodInfo) -> None:
        """Store ``pod`` (a tombstone if its deleted_at is set), keeping earlier container ids."""
        old = self._pods.get(pod.uid)
        if old is not None:
            pod, forgotten = _carry_previous_ids(old, pod)
            self.counts["previous_ids_forgotten"] += forgotten
            self._unindex(old)
            if old.deleted_at is not None:
                if pod.deleted_at is None:
                    self._tombstones.pop(old.uid, None)
                    self.counts["resurrected"] += 1
                else:
                    pod = replace(pod, deleted_at=old.deleted_at)  # deleted twice: the first time counts
        self._pods[pod.uid] = pod
        if pod.deleted_at is not None and pod.uid not in self._tombstones:
            self._tombstones[pod.uid] = pod.deleted_at
        self._index(pod)

    def _index(self, pod: PodInfo) -> None:
        keys = [cid for c in pod.containers for cid in (c.container_id, *c.previous_ids) if cid is not None]
        for cid in keys:
            if self._claim(self._by_container.get(cid), pod):
                self._by_container[cid] = pod.uid
        if pod.config_hash is not None and self._claim(self._by_hash.get(pod.config_hash), pod):
            self._by_hash[pod.config_hash] = pod.uid

    def _claim(self, holder: str | None, pod: PodInfo) -> bool:
        """Whether ``pod`` may take an index key now held by ``holder``: a tombstone never displaces a
        live pod (a static pod's new mirror pod keeps the config hash when the old one's DELETED comes
        late)."""
        if holder is None or holder == pod.uid or pod.deleted_at is None:
            return True
        other = self._pods.get(holder)
        return other is None or other.deleted_at is not None

    def _unindex(self, pod: PodInfo) -> None:
        for container in pod.containers:
            for cid in (container.container_id, *container.previous_ids):
                if cid is not None and self._by_container.get(cid) == pod.uid:
                    del self._by_container[cid]
        if pod.config_hash is not None and self._by_hash.get(pod.config_hash) == pod.uid:
            del self._by_hash[pod.config_hash]

    def _expire(self, now: float) -> int:
        dropped = 0
        horizon = now - self.tombstone_seconds
        while self._tombstones:
            uid, deleted_at = next(iter(self._tombstones.items()))
            if deleted_at > horizon and len(self._tombstones) <= self.max_tombstones:
                break
            if deleted_at > horizon:
                self.counts["tombstones_over_cap"] += 1  # forgotten before tombstone_seconds
            del self._tombstones[uid]
            pod = self._pods.pop(uid, None)
            if pod is not None:
                self._unindex(pod)
            dropped += 1
        if dropped:
            self.counts["tombstones_expired"] += dropped
        return dropped


def _carry_previous_ids(old: PodInfo, new: PodInfo) -> tuple[PodInfo, int]:
    """Keep the ids a container had before this update (a restart replaces containerID); also
    says how many of them the MAX_PREVIOUS_IDS bound made it forget."""
    before = {(c.kind, c.name): c for c in old.containers}
    changed = False
    forgotten = 0
    containers: list[ContainerInfo] = []
    for c in new.containers:
        prior = before.get((c.kind, c.name))
        if prior is None:
            containers.append(c)
            continue
        ids = [*prior.previous_ids, *(x for x in (prior.container_id,) if x is not None), *c.previous_ids]
        kept = tuple(cid for cid in dict.fromkeys(ids) if cid != c.container_id)
        merged = kept[-MAX_PREVIOUS_IDS:]
        forgotten += len(kept) - len(merged)
        if merged != c.previous_ids:
            c = replace(c, previous_ids=merged)
            changed = True
        containers.append(c)
    return (replace(new, containers=tuple(containers)) if changed else new), forgotten


def _pod_limit(
    regular: Iterable[tuple[int | None, bool]], init: Iterable[tuple[int | None, bool]], overhead: int | None
) -> int | None:
    """The pod cgroup's memory limit as the kubelet computes it (resource.PodLimits), or None.

    None unless every regular and init container declares a non-zero memory limit (the kubelet leaves
    the pod cgroup unlimited otherwise). Then: the sum of the regular containers and restartable
    (sidecar) init containers, or, if larger, the largest of each ordinary init container's limit plus
    the sidecars started before it; plus the pod overhead.
    """
    regular = list(regular)
    init = list(init)
    if not regular or any(not limit for limit, _ in (*regular, *init)):
        return None
    sidecars = 0
    init_peak = 0
    for limit, sidecar in init:
        assert limit is not None
        if sidecar:
            sidecars += limit
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, sidecars + limit)
    total = sum(limit for limit, _ in regular if limit is not None) + sidecars
    return max(total, init_peak) + (overhead or 0)
