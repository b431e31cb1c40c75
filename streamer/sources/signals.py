"""The interface of sources that yield Kubernetes signals (K8sEvent) rather than kernel records.

Kubernetes objects (Pods, core/v1 and events.k8s.io/v1 Events) come from the API server's
watch, from JSON lines in files or stdin (what event exporters write), or from a Kafka topic.
Such a source normalizes them with ``parsers.k8s.SignalTracker`` and yields one ``K8sEvent`` per
real signal. The pipeline enriches, correlates and publishes each one, then calls
``acknowledged`` once the sink has it for good (or it sits in the durable spool), so a source
with resumable input (a Kafka consumer's offsets) advances only past acknowledged signals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from parsers.events import K8sEvent
from parsers.telemetry import Tally


class SignalSource(Protocol):
    name: str  # unique per pipeline, e.g. "k8s-watch", "k8s-file:/var/log/events.jsonl", "k8s-kafka:<topic>"
    counts: Tally  # telemetry: SOURCE_TELEMETRY plus what the signal source declares
    # True when signals() ends only on aclose() (a watch, a topic, a followed file): such sources
    # are closed when the kernel input ends, so a backfill run stops at the end of its input.
    endless: bool

    def signals(self) -> AsyncIterator[K8sEvent]:
        """Yield signals until closed or at end of input (files without follow)."""
        ...

    def acknowledged(self, event: K8sEvent) -> None:
        """The sink has this signal (or the spool does): its input position may be committed."""
        ...

    async def aclose(self) -> None:
        """Stop reading; signals() ends soon after."""
        ...
