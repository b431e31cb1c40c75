"""A real OOM kill in a throwaway cgroup v1 memory cgroup, read back from /dev/kmsg and parsed.

Skips, with the reason, where the machine does not allow it (not root, no cgroup v1 memory
controller, no readable /dev/kmsg).
"""

from __future__ import annotations

import pytest
from eventschema import validate
from oomlab import KmsgTail, cgroupfs_parts, container_id, memcg, pod_uid, run_oom

from parsers.events import OomEvent, event_to_dict
from parsers.framing import Framer
from parsers.oom import Assembler

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_allows_oom")]


def parse_raw(raw_records: list[bytes]) -> list[OomEvent]:
    framer = Framer(boot_id="live-test")
    assembler = Assembler()
    events: list[OomEvent] = []
    for raw in raw_records:
        record = framer.frame_kmsg_record(raw)
        if record is not None:
            events.extend(assembler.feed(record))
    return events + assembler.flush()


def test_live_memcg_kill_is_parsed_from_kmsg() -> None:
    uid, cid = pod_uid(), container_id()
    parts = cgroupfs_parts("burstable", uid, cid)
    with memcg(parts, 64 << 20) as cgroup, KmsgTail() as tail:
        killed = run_oom(cgroup, comm="live oom(1)", oom_score_adj=937)
        tail.wait_for(lambda r: b"Killed process" in r.message, count=len(killed), timeout=20)
        raw = [record.raw for record in tail.records]
    assert killed, "the allocating process was not OOM-killed"
    events = [e for e in parse_raw(raw) if e.victim is not None and e.victim.pid in killed]
    assert len(events) == len(killed)
    event = events[0]
    path = "/" + "/".join(parts)
    assert event.victim is not None and event.victim.comm == "live oom(1)"
    assert event.victim.oom_score_adj == 937 and event.victim.anon_rss_kb is not None
    assert event.victim.anon_rss_kb > 32 * 1024
    assert event.cgroup.task_memcg == path and event.cgroup.oom_memcg == path
    assert event.cgroup.pod_uid == uid and event.cgroup.container_id == cid
    assert event.cgroup.qos_class == "Burstable" and event.cgroup.limit_scope == "container"
    assert event.memcg is not None and event.memcg.limit_kb == 64 * 1024
    assert event.constraint == "CONSTRAINT_MEMCG" and event.source.position is not None
    validate(event_to_dict(event))


def test_live_pod_limit_fires_while_victim_in_container() -> None:
    uid, cid = pod_uid(), container_id()
    parts = cgroupfs_parts("burstable", uid, cid)
    with memcg(parts, 96 << 20, limits={2: 48 << 20}) as cgroup, KmsgTail() as tail:
        killed = run_oom(cgroup, comm="podlimit")
        tail.wait_for(lambda r: b"Killed process" in r.message, count=len(killed), timeout=20)
        raw = [record.raw for record in tail.records]
    events = [e for e in parse_raw(raw) if e.victim is not None and e.victim.pid in killed]
    assert events
    event = events[0]
    assert event.cgroup.task_memcg == "/" + "/".join(parts)
    assert event.cgroup.oom_memcg == "/" + "/".join(parts[:3])
    assert event.cgroup.limit_scope == "pod"
    assert event.memcg is not None and event.memcg.limit_kb == 48 * 1024
