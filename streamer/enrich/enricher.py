"""Kubernetes enrichment of OOM events: pod metadata from the node's pod cache, and what the numbers mean.

:class:`Enricher` fills three fields of an :class:`~parsers.events.OomEvent`:

* ``kubernetes``: the pod and container the victim ran in (schema ``kubernetes``), or None;
* ``enrichment``: ``{status, source, waited_seconds}``, how ``kubernetes`` was found or why not:

  ``disabled``        no pod cache (not running on Kubernetes, or enrichment off);
  ``no_cgroup``       the report names no cgroup at all (e.g. a rate-limited bare kill line the pid
                      index could not place);
  ``not_kubernetes``  cgroup paths, but no pod UID or container id in them (a system service, or a
                      container outside Kubernetes that is not in the cache);
  ``pod_not_found``   a pod cgroup, but no such pod in the cache, even after waiting;
  ``ok``              found; ``source`` is the cache's source ("api_watch"), or "tombstone" for a pod
                      that was already deleted.

* ``analysis``: which limit fired and the victim's RSS against it (:func:`analyse`, from the report
  alone; filled whatever the enrichment status).

A pod created a moment ago may not be in the cache yet when its first kill is read (the watch event
and the kernel message race), so a miss waits for cache changes, at most ``wait_seconds``, and
retries. Nothing here raises or drops an event: the worst outcome is ``pod_not_found``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Final

from parsers.events import (
    Analysis,
    Enrichment,
    K8sEvent,
    ObjectRef,
    OomEvent,
    PodMetadata,
    WaitedEnrichment,
)
from parsers.telemetry import Count, Tally, Telemetry
from streamer.enrich.pods import PodCache, PodMatch

_STATUSES = ("ok", "pod_not_found", "not_kubernetes", "no_cgroup", "disabled")
# oomstream_source_counts_total{source="enrichment",name}: events and signals by enrichment status.
ENRICHER_TELEMETRY = Telemetry(
    "enrichment",
    (
        *(Count(status, f"kill events enriched with status {status}") for status in _STATUSES),
        *(Count(f"signal_{status}", f"signals enriched with status {status}") for status in _STATUSES),
        Count("not_synced", "lookups that missed while the pod cache was not yet synced"),
        Count("error", "events whose enrichment failed (sent as pod_not_found)"),
        Count("analysis_error", "events whose analysis failed (sent without one)"),
        Count("signal_error", "signals whose enrichment failed (sent unenriched)"),
    ),
)

__all__ = ["Enricher", "analyse", "kubernetes_fields"]

log = logging.getLogger(__name__)

LIMIT_FIRED: Final = {
    "container": "container_limit",
    "pod": "pod_limit",
    "qos": "node_allocatable",
    "kubepods": "node_allocatable",
    "global": "node",
    "other": "cgroup_limit",
}
# The kernel's "unlimited" (PAGE_COUNTER_MAX pages) prints as 9007199254740988 kB with 4 KiB pages
# (larger with bigger pages): no real limit is that high.
_UNLIMITED_KB: Final = 2**53 // 1024 - 4
_PAGE_SLACK: Final = 65536  # the kernel rounds a limit down to whole pages (up to 64 KiB pages)


def kubernetes_fields(match: PodMatch, node: str | None = None) -> PodMetadata:
    """The schema's ``kubernetes`` object for a cache match (container fields None for a pod match)."""
    pod, container = match.pod, match.container
    return PodMetadata(
        namespace=pod.namespace,
        pod=pod.name,
        pod_uid=pod.uid,
        container=container.name if container is not None else None,
        container_id=container.container_id if container is not None else None,
        node=pod.node if pod.node is not None else node,
        qos_class=pod.qos_class if pod.qos_class in ("Guaranteed", "Burstable", "BestEffort") else None,
        labels=dict(pod.labels),
        annotations=dict(pod.annotations),
        owner=ObjectRef(*pod.owner) if pod.owner is not None else None,
        workload=ObjectRef(*pod.workload) if pod.workload is not None else None,
        image=container.image if container is not None else None,
        memory_request_bytes=container.memory_request_bytes if container is not None else None,
        memory_limit_bytes=container.memory_limit_bytes if container is not None else None,
        pod_memory_limit_bytes=pod.pod_memory_limit_bytes,
        restart_count=container.restart_count if container is not None else None,
        static_pod=pod.static,
        deleted=match.deleted,
    )


def _near(a: int, b: int | None) -> bool:
    return b is not None and abs(a - b) < _PAGE_SLACK


def analyse(event: OomEvent, match: PodMatch | None) -> Analysis | None:
    """Which limit fired and the victim's RSS against it. Pure; from the report, with the pod's
    limits as a cross-check when the cgroup level alone does not tell (an unrecognised cgroup whose
    limit equals the container's or the pod's limit)."""
    scope = event.cgroup.limit_scope
    limit_fired = LIMIT_FIRED.get(scope, "unknown") if scope is not None else "unknown"
    limit_bytes: int | None = None
    limit_kb = event.memcg.limit_kb if event.memcg is not None else None
    if scope != "global" and limit_kb is not None and 0 < limit_kb < _UNLIMITED_KB:
        limit_bytes = limit_kb * 1024
    if limit_bytes is not None and limit_fired in ("cgroup_limit", "unknown") and match is not None:
        if match.container is not None and _near(limit_bytes, match.container.memory_limit_bytes):
            limit_fired = "container_limit"
        elif _near(limit_bytes, match.pod.pod_memory_limit_bytes):
            limit_fired = "pod_limit"
    rss_bytes: int | None = None
    victim = event.victim
    if victim is not None:
        parts = (victim.anon_rss_kb, victim.file_rss_kb, victim.shmem_rss_kb)
        if any(part is not None for part in parts):
            rss_bytes = sum(part for part in parts if part is not None) * 1024
    fraction: float | None = None
    if rss_bytes is not None and limit_bytes:
        fraction = round(rss_bytes / limit_bytes, 4)
    return Analysis(limit_fired, limit_bytes, rss_bytes, fraction)


class Enricher:
    """The pipeline's enrichment hook: ``await enricher(event)`` returns the enriched copy.

    ``counts`` is by enrichment status (signals: ``signal_<status>``), plus ``not_synced`` (a miss
    while the cache had not finished its first list) and ``error``.
    """

    def __init__(
        self,
        cache: PodCache | None,
        *,
        node: str | None,
        wait_seconds: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.node = node
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.counts: Tally = ENRICHER_TELEMETRY.tally()

    async def __call__(self, event: OomEvent) -> OomEvent:
        try:
            kubernetes, enrichment, match = await self._enrich(event)
        except Exception:  # never lose an event to a bug here
            log.exception("pod enrichment failed for event %s", event.event_id)
            self.counts["error"] += 1
            kubernetes, enrichment, match = None, Enrichment("pod_not_found", None), None
        try:
            analysis = analyse(event, match)
        except Exception:
            log.exception("analysis failed for event %s", event.event_id)
            self.counts["analysis_error"] += 1
            analysis = None
        return dataclasses.replace(event, kubernetes=kubernetes, enrichment=enrichment, analysis=analysis)

    async def _enrich(self, event: OomEvent) -> tuple[PodMetadata | None, Enrichment, PodMatch | None]:
        cgroup = event.cgroup
        if self.cache is None:
            return self._result("disabled", None, None)
        if (
            cgroup.task_memcg is None
            and cgroup.oom_memcg is None
            and cgroup.oom_group is None
            and cgroup.pod_uid is None
            and cgroup.container_id is None
        ):
            return self._result("no_cgroup", None, None)
        if cgroup.pod_uid is None and cgroup.container_id is None:
            return self._result("not_kubernetes", None, None)
        in_kubepods = cgroup.pod_uid is not None or cgroup.driver is not None or cgroup.qos_class is not None
        if not in_kubepods:
            # A container id outside the Kubernetes hierarchy (plain Docker): worth a look, not a wait.
            match = self.cache.lookup(pod_uid=None, container_id=cgroup.container_id)
            if match is None:
                return self._result("not_kubernetes", None, None)
            return self._result("ok", match, 0.0)
        match, waited = await self._find(cgroup.pod_uid, cgroup.container_id)
        return self._result("ok" if match is not None else "pod_not_found", match, waited)

    async def _find(self, pod_uid: str | None, container_id: str | None) -> tuple[PodMatch | None, float]:
        """Look up, and on a miss (or a pod match when a container id was expected: its status may not
        have reached the cache yet) wait for cache changes and retry, up to wait_seconds. A sandbox
        (pause) container is in no status, so a kill there costs the whole wait, then gets the pod."""
        assert self.cache is not None
        cache = self.cache
        start = self.clock()
        deadline = start + self.wait_seconds
        match = cache.lookup(pod_uid=pod_uid, container_id=container_id)
        while not _complete(match, container_id):
            remaining = deadline - self.clock()
            if remaining <= 0 or not await cache.wait_for_change(remaining):
                break
            match = cache.lookup(pod_uid=pod_uid, container_id=container_id)
        waited = max(0.0, self.clock() - start)
        if match is None and not cache.synced:
            self.counts["not_synced"] += 1
        return match, waited

    def _result(
        self, status: str, match: PodMatch | None, waited: float | None, *, prefix: str = ""
    ) -> tuple[PodMetadata | None, Enrichment, PodMatch | None]:
        self.counts[prefix + status] += 1
        source: str | None = None
        kubernetes: PodMetadata | None = None
        if match is not None and self.cache is not None:
            source = "tombstone" if match.deleted else self.cache.source
            kubernetes = kubernetes_fields(match, self.node)
        if waited is None:
            return kubernetes, Enrichment(status, source), match
        return kubernetes, WaitedEnrichment(status, source, round(waited, 3)), match

    async def enrich_signal(self, event: K8sEvent) -> K8sEvent:
        """Fill ``kubernetes`` (and ``enrichment``) of a pod-scoped Kubernetes signal; node-scoped
        signals (no pod UID, no container id) are returned unchanged."""
        if event.pod_uid is None and event.container_id is None:
            return event
        try:
            if self.cache is None:
                kubernetes, enrichment, _ = self._result("disabled", None, None, prefix="signal_")
            else:
                match, waited = await self._find(event.pod_uid, event.container_id)
                status = "ok" if match is not None else "pod_not_found"
                kubernetes, enrichment, _ = self._result(status, match, waited, prefix="signal_")
        except Exception:
            log.exception("pod enrichment failed for signal %s", event.event_id)
            self.counts["signal_error"] += 1
            return event
        return dataclasses.replace(event, kubernetes=kubernetes, enrichment=enrichment)


def _complete(match: PodMatch | None, container_id: str | None) -> bool:
    return match is not None and (container_id is None or match.container is not None)
