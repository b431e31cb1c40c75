"""The pipeline with Kubernetes signal sources only: signals published to a JSON-lines file, the ids
of published signals kept in the checkpoint store (the signal ledger), so a restart that reads the same
objects again publishes nothing twice; correlation into incidents; a failed delivery stays unpublished."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from k8sfake.objects import ContainerSpec, make_event, make_pod, terminated
from prometheus_client import CollectorRegistry

from parsers.events import (
    EVENT_TYPE_K8S_MEMORY_PRESSURE,
    EVENT_TYPE_K8S_OOM_KILLED,
    EVENT_TYPE_K8S_OOM_KILLING,
    AnyEvent,
    Source,
    event_to_dict,
)
from parsers.k8s import SignalTracker
from streamer.checkpoint import CheckpointStore
from streamer.enrich.incidents import Correlator
from streamer.pipeline import SIGNAL_LEDGER_NAME, Pipeline, PipelineSettings, SignalLedger
from streamer.sinks.base import DeliveryResult, DeliveryStatus
from streamer.sinks.file import FileSink
from streamer.sources.k8s_objects import K8sObjectLinesSource

KILL_MESSAGE = (
    "Memory cgroup out of memory: Killed process 4242 (stress-ng) total-vm:1048576kB, anon-rss:131072kB, "
    "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:512kB oom_score_adj:999"
)
KILL_TYPES = {EVENT_TYPE_K8S_OOM_KILLED, EVENT_TYPE_K8S_OOM_KILLING}
SOURCE_FOR_PROPERTY = Source(
    kind="k8s_file", format="k8s_json", position={"path": "x", "offset": 1, "line": 1}
)


def write_objects(path: Path) -> int:
    """Kubernetes objects as JSON lines; returns how many signals they hold (4)."""
    objects: list[dict[str, Any]] = [
        # NPD's OOMKilling Node Event seen twice: occurrences 1 and 2
        make_event(
            reason="OOMKilling", message=KILL_MESSAGE, count=2, uid="11111111-0000-4000-8000-000000000001",
            first_timestamp="2026-11-27T10:05:00Z", last_timestamp="2026-11-27T10:05:30Z",
        ),
        # a pod whose container was OOM-killed and restarted
        make_pod(
            name="web-1", uid="22222222-0000-4000-8000-000000000002",
            containers=[ContainerSpec(name="app", container_id="b2" * 32, restart_count=1,
                                      last_state=terminated("OOMKilled", container_id="a1" * 32))],
        ),
        # node memory pressure: a signal, but no kill (no incident)
        make_event(
            reason="EvictionThresholdMet", message="Attempting to reclaim memory", component="kubelet",
            uid="33333333-0000-4000-8000-000000000003",
        ),
        # not a memory signal at all
        make_event(reason="NodeReady", message="Node node-a status is now: NodeReady", component="kubelet"),
    ]  # fmt: skip
    path.write_text("".join(json.dumps(obj) + "\n" for obj in objects))
    return 4


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class FailingFileSink(FileSink):
    """A FileSink that reports FAILED (nothing written) for the signals whose type is in ``fail``."""

    def __init__(self, path: str, fail: set[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.fail = fail

    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        if getattr(event, "type", None) in self.fail:
            self._report(
                DeliveryResult(
                    event.event_id, tuple(positions), DeliveryStatus.FAILED, reason="connection_error"
                )
            )
            return
        await super().submit(event, positions)


class StopAfterFileSink(FileSink):
    """A FileSink whose process "dies" after ``deliver`` events: the rest is never written and
    reported FAILED, as a crash mid-way would leave them (unpublished, not in the ledger)."""

    def __init__(self, path: str, deliver: int, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.left = deliver

    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        if self.left <= 0:
            self._report(
                DeliveryResult(event.event_id, tuple(positions), DeliveryStatus.FAILED, reason="crash")
            )
            return
        self.left -= 1
        await super().submit(event, positions)


async def run_once(
    tmp_path: Path,
    objects: Path,
    out: Path,
    *,
    correlator: Correlator | None = None,
    fail: set[str] | None = None,
    deliver: int | None = None,
) -> tuple[Pipeline, SignalLedger, dict[str, Any] | None]:
    """One service run (a process lifetime): load the ledger, publish, save; the store is released.
    ``deliver``: the run stops publishing after that many events (a crash mid-way)."""
    store = CheckpointStore(str(tmp_path / "state"))
    try:
        ledger = SignalLedger()
        ledger.load(store.load(SIGNAL_LEDGER_NAME))
        pipeline: Pipeline
        sink: FileSink
        if deliver is None:
            sink = FailingFileSink(
                str(out), fail or set(), on_delivery=lambda result: pipeline.on_delivery(result),
                registry=CollectorRegistry(),
            )  # fmt: skip
        else:
            sink = StopAfterFileSink(
                str(out), deliver, on_delivery=lambda result: pipeline.on_delivery(result),
                registry=CollectorRegistry(),
            )  # fmt: skip
        source = K8sObjectLinesSource(str(objects), follow=False, node="node-a")
        pipeline = Pipeline(
            [], sink, checkpoints=store, signal_sources=[source], correlator=correlator, signal_ledger=ledger,
            settings=PipelineSettings(tick_seconds=0.01, checkpoint_interval_seconds=0.01),
        )  # fmt: skip
        await sink.start()
        try:
            await asyncio.wait_for(pipeline.run(), 10)
        finally:
            await sink.close()
        return pipeline, ledger, store.load(SIGNAL_LEDGER_NAME)
    finally:
        store.close()


async def test_restart_does_not_publish_signals_again(tmp_path: Path) -> None:
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    n = write_objects(objects)

    first, ledger, saved = await run_once(tmp_path, objects, out)
    published = read_lines(out)
    assert len(published) == n
    ids = [e["event_id"] for e in published]
    assert len(set(ids)) == n
    assert sorted(e["type"] for e in published) == sorted(
        [EVENT_TYPE_K8S_OOM_KILLING, EVENT_TYPE_K8S_OOM_KILLING, EVENT_TYPE_K8S_OOM_KILLED,
         EVENT_TYPE_K8S_MEMORY_PRESSURE]
    )  # fmt: skip
    assert first.counts["signals_submitted"] == n and first.counts["events_acknowledged"] == n
    assert first.counts["signals_already_published"] == 0
    assert len(ledger) == n and all(i in ledger for i in ids)
    assert saved is not None and set(saved["published"]) == set(ids), "the ledger reached the store"

    # The restart: a new process reads the same objects (new tracker: same deterministic ids).
    second, _, saved2 = await run_once(tmp_path, objects, out)
    assert second.counts["signals_read"] == n
    assert second.counts["signals_already_published"] == n
    assert second.counts["signals_submitted"] == 0
    assert read_lines(out) == published, "nothing was published twice"
    assert saved2 is not None and set(saved2["published"]) == set(ids)


async def test_without_the_ledger_a_restart_publishes_again(tmp_path: Path) -> None:
    """The control for the test above: the same ids come back, only the ledger drops them."""
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    n = write_objects(objects)
    await run_once(tmp_path, objects, out)
    with CheckpointStore(str(tmp_path / "state")) as store:  # the state directory was lost
        assert store.load(SIGNAL_LEDGER_NAME) is not None
        store.delete(SIGNAL_LEDGER_NAME)
    second, _, _ = await run_once(tmp_path, objects, out)
    lines = read_lines(out)
    assert len(lines) == 2 * n and second.counts["signals_submitted"] == n
    assert [e["event_id"] for e in lines[:n]] == [e["event_id"] for e in lines[n:]]


async def test_correlated_signals_carry_incident_ids_and_summaries_come_at_the_end(tmp_path: Path) -> None:
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    n = write_objects(objects)
    pipeline, _, _ = await run_once(tmp_path, objects, out, correlator=Correlator(window_seconds=3600))
    lines = read_lines(out)
    signals = [e for e in lines if e["type"] != "incident"]
    incidents = [e for e in lines if e["type"] == "incident"]
    assert len(signals) == n and incidents
    # every summary after every signal: they come from the correlator's flush at the end of the run
    assert max(i for i, e in enumerate(lines) if e["type"] != "incident") < min(
        i for i, e in enumerate(lines) if e["type"] == "incident"
    )
    kills = [e for e in signals if e["type"] in KILL_TYPES]
    assert len(kills) == 3 and all(e["incident_id"] for e in kills)
    pressure = [e for e in signals if e["type"] == EVENT_TYPE_K8S_MEMORY_PRESSURE]
    assert len(pressure) == 1 and pressure[0]["incident_id"] is None
    # the two occurrences of one NPD event (same host and pid) are one incident
    npd = [e for e in kills if e["type"] == EVENT_TYPE_K8S_OOM_KILLING]
    assert npd[0]["incident_id"] == npd[1]["incident_id"]
    by_id = {e["incident_id"]: e for e in incidents}
    assert len(by_id) == len(incidents)
    assert {e["incident_id"] for e in kills} == set(by_id)
    for kill in kills:
        assert kill["event_id"] in by_id[kill["incident_id"]]["signal_event_ids"]
    assert sorted(i for e in incidents for i in e["signal_event_ids"]) == sorted(e["event_id"] for e in kills)
    assert all(e["verdict"] == "reported_by_kubernetes_only" and e["kills"] == 0 for e in incidents)
    assert pipeline.counts["incidents_submitted"] == len(incidents)
    # incident summaries are not signals: the ledger holds the signal ids only
    assert pipeline.signal_ledger is not None and len(pipeline.signal_ledger) == n

    # Restart with a fresh correlator: nothing published again, so no new (bogus) incident either.
    again, _, _ = await run_once(tmp_path, objects, out, correlator=Correlator(window_seconds=3600))
    assert again.counts["signals_already_published"] == n
    assert again.counts["incidents_submitted"] == 0
    assert read_lines(out) == lines


async def test_a_failed_delivery_is_not_recorded_and_is_published_next_run(tmp_path: Path) -> None:
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    n = write_objects(objects)
    first, ledger, saved = await run_once(tmp_path, objects, out, fail={EVENT_TYPE_K8S_OOM_KILLED})
    published = read_lines(out)
    assert len(published) == n - 1 and EVENT_TYPE_K8S_OOM_KILLED not in {e["type"] for e in published}
    assert first.counts["events_failed"] == 1 and first.counts["events_acknowledged"] == n - 1
    assert len(ledger) == n - 1
    assert saved is not None and set(saved["published"]) == {e["event_id"] for e in published}

    second, ledger2, _ = await run_once(tmp_path, objects, out)
    lines = read_lines(out)
    assert second.counts["signals_already_published"] == n - 1
    assert second.counts["signals_submitted"] == 1
    assert lines[: n - 1] == published
    assert [e["type"] for e in lines[n - 1 :]] == [EVENT_TYPE_K8S_OOM_KILLED]
    assert len({e["event_id"] for e in lines}) == n and len(ledger2) == n


# -- Event counts in the thousands: emitted + declared occurrences cover 1..count once ------------

NPD_1074 = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "k8s" / "npd-oomkilling-combined-1074.json").read_text()
)


def npd_at(count: int, last_timestamp: str = "2026-11-27T10:04:58Z") -> dict[str, Any]:
    """The same NPD Event object (same uid) as the API shows it when its count is ``count``."""
    return {**NPD_1074, "count": count, "lastTimestamp": last_timestamp}


def coverage(events: list[dict[str, Any]]) -> list[int]:
    """Occurrences covered by published events (their own and their declared ranges), each once."""
    covered: list[int] = []
    for event in events:
        covered.append(event["occurrence"])
        skipped = event["skipped_occurrences"]
        if skipped is not None:
            covered.extend(range(skipped["first"], skipped["last"] + 1))
    assert len(covered) == len(set(covered)), "an occurrence is covered twice"
    return sorted(covered)


async def test_count_in_the_thousands_fresh(tmp_path: Path) -> None:
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    objects.write_text(json.dumps(NPD_1074) + "\n")
    pipeline, ledger, saved = await run_once(tmp_path, objects, out)
    published = read_lines(out)
    assert [e["occurrence"] for e in published] == list(range(975, 1075))
    assert published[0]["skipped_occurrences"] == {"first": 1, "last": 974}
    assert coverage(published) == list(range(1, 1075))
    assert pipeline.counts["occurrences_skipped"] == 974
    assert pipeline.counts["occurrence_jumps_capped"] == 1
    assert ledger.covered(NPD_1074["metadata"]["uid"]) == 1074
    assert saved is not None and saved["occurrences"][NPD_1074["metadata"]["uid"]][0] == 1074


async def test_count_in_the_thousands_across_a_restart_mid_way(tmp_path: Path) -> None:
    """Run 1 dies after 30 of the 100 events of count 1074; run 2 starts when NPD's count is 2500
    (the file holds the object at both counts, as a watch log would): across both runs every
    occurrence 1..2500 is published or declared exactly once. Run 3 (nothing new) adds nothing."""
    uid = NPD_1074["metadata"]["uid"]
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    objects.write_text(json.dumps(npd_at(1074)) + "\n")
    first, ledger, _ = await run_once(tmp_path, objects, out, deliver=30)
    assert first.counts["events_failed"] == 70, "the 70 events after the crash were not published"
    run1 = read_lines(out)
    assert [e["occurrence"] for e in run1] == list(range(975, 1005))
    assert run1[0]["skipped_occurrences"] == {"first": 1, "last": 974}
    assert ledger.covered(uid) == 1004

    with objects.open("a") as handle:
        handle.write(json.dumps(npd_at(2500, "2026-11-27T11:30:00Z")) + "\n")
    second, _, _ = await run_once(tmp_path, objects, out)
    run2 = read_lines(out)[len(run1) :]
    # the relisted count 1074: 1005..1074 (not 975..1004 again, and no second declaration of 1..974)
    # then the jump to 2500: 2401..2500, declaring 1075..2400
    assert [e["occurrence"] for e in run2] == [*range(1005, 1075), *range(2401, 2501)]
    assert run2[0]["skipped_occurrences"] is None
    assert run2[70]["skipped_occurrences"] == {"first": 1075, "last": 2400}
    assert coverage(run1 + run2) == list(range(1, 2501))
    assert second.counts["signals_already_published"] == 30

    third, _, _ = await run_once(tmp_path, objects, out)
    assert read_lines(out)[len(run1) + len(run2) :] == []
    assert third.counts["signals_submitted"] == 0


async def test_a_restart_after_a_capped_jump_narrows_the_declared_range(tmp_path: Path) -> None:
    """Run 1 saw count 1074 (published 975..1074, declared 1..974); after a restart the fresh
    tracker sees count 5000 and would declare 1..4900: the ledger narrows it to 1075..4900."""
    objects, out = tmp_path / "objects.jsonl", tmp_path / "out.jsonl"
    objects.write_text(json.dumps(npd_at(1074)) + "\n")
    await run_once(tmp_path, objects, out)
    objects.write_text(json.dumps(npd_at(5000, "2026-11-27T12:00:00Z")) + "\n")  # only the new count
    second, _, _ = await run_once(tmp_path, objects, out)
    lines = read_lines(out)
    run2 = lines[100:]
    assert [e["occurrence"] for e in run2] == list(range(4901, 5001))
    assert run2[0]["skipped_occurrences"] == {"first": 1075, "last": 4900}
    assert second.counts["occurrences_skipped"] == 4900 - 1075 + 1
    assert coverage(lines) == list(range(1, 5001))


@pytest.mark.schema_exempt("tens of thousands of events per run; the tests above check these events' schema")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(
        st.tuples(
            st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=5),  # counts seen
            st.integers(min_value=0, max_value=400),  # events published before the run dies
        ),
        min_size=1,
        max_size=5,
    ),
    cap=st.integers(min_value=0, max_value=50),
    final=st.integers(min_value=1, max_value=3000),
)
def test_any_restarts_and_relists_cover_each_occurrence_once(
    runs: list[tuple[list[int], int]], cap: int, final: int
) -> None:
    """The tracker and the ledger together, as the pipeline uses them: runs that see the object at
    any counts (relists repeat them, counts only grow in the API but a lagging input can show an
    older one) and die after any number of events; a last run sees the final count. Published plus
    declared occurrences cover 1..highest count exactly once."""
    ledger = SignalLedger()
    published: list[dict[str, Any]] = []
    highest = 0
    for counts, lives_for in [*runs, ([final], 10**9)]:
        tracker = SignalTracker(max_backfill=cap)  # a new process
        left = lives_for
        for count in counts:
            highest = max(highest, count)
            for signal in tracker.from_object(npd_at(count), source=SOURCE_FOR_PROPERTY):
                admitted = ledger.admit(signal)
                if admitted is None or left <= 0:
                    continue
                left -= 1
                published.append(event_to_dict(admitted))
                ledger.record(admitted, 0.0)
    # The last run relists the object at the highest count it ever had (the API shows the latest).
    tracker = SignalTracker(max_backfill=cap)
    for signal in tracker.from_object(npd_at(highest), source=SOURCE_FOR_PROPERTY):
        admitted = ledger.admit(signal)
        if admitted is not None:
            published.append(event_to_dict(admitted))
            ledger.record(admitted, 0.0)
    assert coverage(published) == list(range(1, highest + 1))
