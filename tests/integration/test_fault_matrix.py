"""The fault matrix (README, "Faults and what they cost"): `oomstream run` as a subprocess, real
OOM kills in memory cgroups of their own, the real broker and the real journald.

Each test selects its own kills by victim name and pid (other kills happen on this machine at the
same time), asserts that nothing of them is lost, that an event id appears at most once except
as a copy of itself, and checks the counters and log lines the fault should produce. Deadlines
are shortened by options (linger 0.5 s, report timeout 2 s), so a delay shows within seconds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from oomlab import (
    KmsgRecord,
    KmsgTail,
    StormResult,
    cgroupfs_parts,
    container_id,
    memcg,
    oom_storm,
    pod_uid,
    private_journald,
    wait_journal,
)

from parsers.events import event_to_json
from streamer.spool import Spool
from tests.integration.faults import (
    Kill,
    Service,
    assert_each_published_once,
    broker_pid,
    capture_kill,
    cause_kill,
    checkpoint_of,
    comm_for,
    events_in,
    events_of,
    kafka_service,
    wait_checkpoint,
)
from tests.integration.kafka_broker import LocalCluster, make_events, unique_topic

pytestmark = [pytest.mark.kernel, pytest.mark.kafka, pytest.mark.usefixtures("kernel_allows_oom")]

# Linger 0.5 s + ticks + the broker's acknowledgement: "within a few seconds" with room for a
# machine loaded by the whole suite; the bug this guards against delayed them until the next
# kernel record (forever on a quiet node).
QUIET_NODE_SECONDS = 10.0


# -- row 1: restart with a backlog on a quiet node ---------------------------------------------------


def test_row1_kmsg_kills_while_down_are_published_within_seconds_of_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = unique_topic("fm-r1-kmsg")
    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        wait_checkpoint(tmp_path)  # it has read the ring's backlog and saved where it is
        time.sleep(1.0)
    finally:
        service.kill()
    kills = [cause_kill(comm_for("r1k", n)) for n in range(2)]
    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        service.wait_published([kill.comm for kill in kills], timeout=30)
        took = service.published_after_running([kill.comm for kill in kills])
        assert took < QUIET_NODE_SECONDS, f"published {took:.1f} s after the restart"
        print(f"row 1 kmsg: published {took:.2f} s after the restart")
        metrics = service.metrics()
        # Resumed at the checkpoint of this boot: no gap, nothing counted lost.
        assert metrics['oomstream_source_counts_total{name="skipped_checkpoint",source="kmsg"}'] > 0
        assert metrics['oomstream_source_lost_records_total{source="kmsg"}'] == 0
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    assert_each_published_once(events_in(kafka_bootstrap, topic), kills)


def test_row1_journald_kills_while_down_are_published_within_seconds_of_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    with private_journald() as journald:
        if not journald:
            pytest.skip(f"no systemd-journald: {journald.reason}")
        topic = unique_topic("fm-r1-journald")
        env = {"OOMSTREAM_SOURCES_ENABLED": "journald"}
        service = kafka_service(tmp_path, kafka_bootstrap, topic, **env)
        try:
            wait_checkpoint(tmp_path, "journald")
            time.sleep(1.0)
        finally:
            service.kill()
        kills = [cause_kill(comm_for("r1j", n)) for n in range(2)]
        for kill in kills:
            needle = f"Killed process {kill.pids[0]} "
            entries = wait_journal(lambda e, needle=needle: needle in str(e.get("MESSAGE")), timeout=15)
            assert any(needle in str(entry.get("MESSAGE")) for entry in entries), "journald missed a kill"
        service = kafka_service(tmp_path, kafka_bootstrap, topic, **env)
        try:
            service.wait_published([kill.comm for kill in kills], timeout=30)
            took = service.published_after_running([kill.comm for kill in kills])
            assert took < QUIET_NODE_SECONDS, f"published {took:.1f} s after the restart"
        finally:
            code, _ = service.stop()
    assert code == 0, service.tail()
    assert_each_published_once(events_in(kafka_bootstrap, topic), kills)


def followed_file_service(tmp_path: Path, bootstrap: str, topic: str, log_file: Path) -> Service:
    return kafka_service(
        tmp_path,
        bootstrap,
        topic,
        OOMSTREAM_SOURCES_ENABLED="files",
        OOMSTREAM_SOURCES_FILES_PATHS=str(log_file),
        OOMSTREAM_SOURCES_FILES_FOLLOW="true",
    )


def append_lines(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write("".join(line + "\n" for line in lines))


def test_row1_followed_file_kills_written_while_down_are_published_within_seconds_of_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    log_file = tmp_path / "kern.log"
    append_lines(log_file, ["[    1.000000] Linux version 6.1.0 (a log that starts)"])
    topic = unique_topic("fm-r1-file")
    service = followed_file_service(tmp_path, kafka_bootstrap, topic, log_file)
    try:
        wait_checkpoint(tmp_path, f"file:{log_file}")
    finally:
        service.kill()
    captured = [capture_kill(comm_for("r1f", n)) for n in range(2)]
    for _, lines in captured:
        append_lines(log_file, lines)
    kills = [kill for kill, _ in captured]
    service = followed_file_service(tmp_path, kafka_bootstrap, topic, log_file)
    try:
        service.wait_published([kill.comm for kill in kills], timeout=30)
        took = service.published_after_running([kill.comm for kill in kills])
        assert took < QUIET_NODE_SECONDS, f"published {took:.1f} s after the restart"
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    assert_each_published_once(events_in(kafka_bootstrap, topic), kills)


# -- row 2: first start at the oldest record, then silence ---------------------------------------


def test_row2_first_start_at_oldest_publishes_old_kills_within_seconds(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    kills = [cause_kill(comm_for("r2o", n)) for n in range(2)]
    topic = unique_topic("fm-r2-oldest")
    service = kafka_service(tmp_path, kafka_bootstrap, topic, OOMSTREAM_SOURCES_KMSG_START="oldest")
    try:
        service.wait_published([kill.comm for kill in kills], timeout=30)
        # Counted from the start: the whole ring is read and published in that time.
        took = service.published_after_running([kill.comm for kill in kills])
        assert took < QUIET_NODE_SECONDS, f"published {took:.1f} s after the start"
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    assert_each_published_once(events_in(kafka_bootstrap, topic), kills)


# -- row 3: a cut report -------------------------------------------------------------------------


def test_row3_a_report_cut_before_its_kill_line_is_published_as_partial_without_more_input(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    log_file = tmp_path / "kern.log"
    append_lines(log_file, ["[    1.000000] Linux version 6.1.0 (a log that starts)"])
    topic = unique_topic("fm-r3-cut")
    service = followed_file_service(tmp_path, kafka_bootstrap, topic, log_file)
    try:
        wait_checkpoint(tmp_path, f"file:{log_file}")
        kill, lines = capture_kill(comm_for("r3c", 0))
        cut = [line for line in lines if "oom-kill:" not in line and "Killed process" not in line]
        cut = [line for line in cut if "reaped process" not in line]
        assert len(cut) < len(lines)
        append_lines(log_file, cut)  # the rest never comes: lost, as lines lost to the ring are
        # The report timeout (2 s here) then the linger (0.5 s): partial, with no further input.
        took = service.wait_published([kill.pod_uid], timeout=30)
        assert took < 2 + QUIET_NODE_SECONDS, f"published {took:.1f} s after the cut"
        assert (
            sum(v for k, v in service.metrics().items() if k.startswith("oomstream_partial_reports_total"))
            == 1
        )
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    mine = [
        event
        for event in events_in(kafka_bootstrap, topic)
        if any(f"{kill.comm} invoked oom-killer" in line for line in event.get("raw_lines") or [])  # type: ignore[union-attr]
    ]
    assert len(mine) == 1 and mine[0]["partial"] is True, mine
    assert mine[0]["victim"] is None


def test_row3_a_service_killed_mid_report_reads_it_whole_after_the_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = unique_topic("fm-r3-midreport")
    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        wait_checkpoint(tmp_path)
        time.sleep(1.0)
        service.signal(signal.SIGSTOP)
        kill = cause_kill(comm_for("r3m", 0))  # the whole report waits in the ring
        service.signal(signal.SIGCONT)
        time.sleep(0.05)  # somewhere in the report, or just after it
    finally:
        service.kill()
    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        service.wait_published([kill.comm], timeout=30)
        took = service.published_after_running([kill.comm])
        assert took < QUIET_NODE_SECONDS, f"published {took:.1f} s after the restart"
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    events = events_in(kafka_bootstrap, topic)
    assert_each_published_once(events, [kill])
    assert not any(event["partial"] for event in events_of(events, [kill])[kill.comm])


# -- rows 4 and 8: a broker of our own, to hang and to kill ---------------------------------------


@pytest.fixture(scope="module")
def own_broker(local_cluster_prerequisites: None) -> Iterator[LocalCluster]:
    cluster = LocalCluster("oomstream-it-faults", port=29150)
    cluster.start()
    try:
        yield cluster
    finally:
        pid = broker_pid(cluster)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # never leave it stopped
        cluster.clean()


def kmsg_seq_of_header(comm: str, records: list[KmsgRecord]) -> int:
    return next(r.seq for r in records if r.text.startswith(f"{comm} invoked oom-killer".encode()))


def test_row4_broker_hung_30s_delivers_after_resume_with_bounded_memory_and_honest_checkpoints(
    tmp_path: Path, own_broker: LocalCluster
) -> None:
    topic = unique_topic("fm-r4-hang")
    service = kafka_service(tmp_path, own_broker.bootstrap, topic)
    pid = broker_pid(own_broker)
    try:
        wait_checkpoint(tmp_path)
        time.sleep(2.0)  # the ring's backlog is published; the checkpoint follows it
        rss_before = service.rss_kib()
        os.kill(pid, signal.SIGSTOP)
        hung_at = time.monotonic()
        try:
            with KmsgTail() as tail:
                kills = [cause_kill(comm_for("r4h", n)) for n in range(2)]
                tail.wait_for(lambda r: f"Killed process {kills[-1].pids[0]} ".encode() in r.text, timeout=15)
            first_seq = kmsg_seq_of_header(kills[0].comm, tail.records)
            saved_seqs: list[int] = []
            rss_peak = rss_before
            while time.monotonic() - hung_at < 30:
                saved = checkpoint_of(tmp_path)
                assert saved is not None
                saved_seqs.append(int(saved["seq"]))  # type: ignore[call-overload]
                rss_peak = max(rss_peak, service.rss_kib())
                service.check_alive()
                time.sleep(0.5)
            assert not any(service.published(kill.comm) for kill in kills)
        finally:
            os.kill(pid, signal.SIGCONT)
        # The checkpoint never passed the kills nobody had acknowledged.
        assert max(saved_seqs) < first_seq, (max(saved_seqs), first_seq)
        assert rss_peak - rss_before < 64 << 10, f"RSS grew by {(rss_peak - rss_before) >> 10} MiB while hung"
        took = service.wait_published([kill.comm for kill in kills], timeout=90)
        print(f"row 4: delivered {took:.1f} s after SIGCONT; RSS {rss_before >> 10} -> {rss_peak >> 10} MiB")
        deadline = time.monotonic() + 10
        while int(checkpoint_of(tmp_path)["seq"]) < first_seq and time.monotonic() < deadline:  # type: ignore[call-overload, index]
            time.sleep(0.2)
        assert int(checkpoint_of(tmp_path)["seq"]) >= first_seq  # type: ignore[call-overload, index]
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    assert_each_published_once(events_in(own_broker.bootstrap, topic), kills)


def test_row8_sigterm_during_a_storm_with_kafka_down_exits_in_time_and_the_next_start_delivers(
    tmp_path: Path, own_broker: LocalCluster
) -> None:
    topic = unique_topic("fm-r8-storm")
    settings = {
        "OOMSTREAM_PIPELINE_SHUTDOWN_TIMEOUT_SECONDS": "5",
        "OOMSTREAM_SINKS_KAFKA_DELIVERY_TIMEOUT_SECONDS": "3",
    }
    service = kafka_service(tmp_path, own_broker.bootstrap, topic, **settings)
    comm = comm_for("r8s", 0)
    broker_back = threading.Thread(target=own_broker.start_node, args=(1,))
    try:
        wait_checkpoint(tmp_path)
        time.sleep(1.0)
        own_broker.kill_node(1)
        uid, cid = pod_uid(), container_id()
        with memcg(cgroupfs_parts("besteffort", uid, cid), 48 << 20) as cgroup, KmsgTail() as tail:
            storm: list[StormResult] = []
            driver = threading.Thread(
                target=lambda: storm.append(oom_storm([cgroup], kills=8, comms=(comm,)))
            )
            driver.start()
            tail.wait_for(
                lambda r: b"Killed process" in r.text and comm.encode() in r.text, count=3, timeout=30
            )
            code, took = service.stop()  # mid-storm, Kafka down
            # The broker comes back while the storm goes on; the service restarts as soon as both
            # are done (what it had not read is in the ring, which other kills also fill).
            broker_back.start()
            driver.join(90)
        assert storm, "the storm driver did not finish"
        killed = storm[0].killed_pids
        assert len(killed) >= 3
    finally:
        service.ensure_stopped()
        if broker_back.ident is None:
            broker_back.start()
        broker_back.join(180)
    assert code == 0, service.tail()
    assert took < 5 + 2, f"exit took {took:.1f} s (shutdown timeout 5 s)\n{service.tail(80)}"
    with Spool(str(tmp_path / "spool"), 64 << 20, 1 << 20) as spool:
        spooled = spool.events
    assert spooled >= 1, "nothing read before SIGTERM was spooled"
    # The next start resends the spool and reads on from the checkpoint: every kill arrives.
    service = kafka_service(tmp_path, own_broker.bootstrap, topic)
    try:
        service.wait_published([f"({pid})" for pid in killed], timeout=60)
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    print(f"row 8: exit {took:.1f} s after SIGTERM, {spooled} events spooled, {len(killed)} kills delivered")
    assert_each_published_once(
        events_in(own_broker.bootstrap, topic), [Kill(comm, [pid], uid) for pid in killed]
    )


# -- row 7: a garbled checkpoint and a torn spool segment at start --------------------------------


def test_row7_garbled_checkpoint_and_torn_spool_are_named_in_the_log_and_the_service_runs_on(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = unique_topic("fm-r7-garbled")
    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        wait_checkpoint(tmp_path)
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    [checkpoint] = [
        path
        for path in (tmp_path / "state").glob("*.checkpoint.json")
        if '"source":"kmsg"' in path.read_text()
    ]
    checkpoint.write_bytes(checkpoint.read_bytes()[:40])  # a disk fault cut it
    # One event waiting in the spool from an earlier outage, then a write torn by a crash.
    [spooled] = make_events(1, host="node-r7")
    with Spool(str(tmp_path / "spool"), 64 << 20, 1 << 20) as spool:
        spool.append(None, event_to_json(spooled), {"reason": "test"})
    [segment] = sorted((tmp_path / "spool").glob("segment-*.spool"))
    with segment.open("ab") as torn:
        torn.write(struct.pack("<II", 4000, 0) + b"half a record")
    kill = cause_kill(comm_for("r7g", 0))

    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        service.wait_log(rf"checkpoint {re.escape(str(checkpoint))} of source 'kmsg' is unusable", 20)
        service.wait_log(rf"spool segment {re.escape(str(segment))}: .* cut 21 byte", 20)
        service.wait_published([kill.comm], timeout=30)  # read again from the oldest record
        time.sleep(2.0)
        service.check_alive()  # no crash, no restart loop
        metrics = service.metrics()
        assert metrics["oomstream_checkpoint_corrupt_total"] == 1
        assert metrics["oomstream_spool_torn_records_total"] == 1
        assert metrics["oomstream_spool_events"] == 0  # the good record was resent and acknowledged
        assert (tmp_path / "state" / (checkpoint.name + ".corrupt")).exists()
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    events = events_in(kafka_bootstrap, topic)
    assert_each_published_once(events, [kill])
    assert [event["event_id"] for event in events].count(spooled.event_id) == 1


# -- row 6: the disk of the state and spool directories is full ----------------------------------


@contextlib.contextmanager
def full_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` and filled to the last byte; the filler's path."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        (where / "state").mkdir()
        (where / "spool").mkdir()
        filler = where / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        finally:
            os.close(fd)
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_row6_disk_full_keeps_the_service_delivering_and_says_so(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = unique_topic("fm-r6-full")
    disk = tmp_path / "disk"
    with full_disk(disk) as filler:
        service = kafka_service(
            tmp_path,
            kafka_bootstrap,
            topic,
            OOMSTREAM_STATE_DIRECTORY=str(disk / "state"),
            OOMSTREAM_SPOOL_DIRECTORY=str(disk / "spool"),
        )
        try:
            service.wait_log(r"spool .*: cannot create a segment \(No space left on device\)", 20)
            kill = cause_kill(comm_for("r6f", 0))
            took = service.wait_published([kill.comm], timeout=30)
            assert took < QUIET_NODE_SECONDS
            service.wait_log(
                r"checkpoint of kmsg failed \(.*No space left on device.*\); keeping the previous", 10
            )
            assert service.metrics()["oomstream_checkpoint_save_errors_total"] >= 1
            assert checkpoint_of(disk) is None
            filler.unlink()  # room again: the next interval saves the checkpoint
            wait_checkpoint(disk, timeout=10)
            service.check_alive()
        finally:
            code, _ = service.stop()
    assert code == 0, service.tail()
    assert_each_published_once(events_in(kafka_bootstrap, topic), [kill])


# -- row 5: the service stopped for longer than the ring holds ------------------------------------


def write_kmsg_lines(lines: list[str]) -> None:
    fd = -1
    try:
        for n, line in enumerate(lines):
            if n % 8 == 0:  # the devkmsg rate limit is per open file
                if fd >= 0:
                    os.close(fd)
                fd = os.open("/dev/kmsg", os.O_WRONLY)
            os.write(fd, f"<6>{line}\n".encode())
    finally:
        if fd >= 0:
            os.close(fd)


def oldest_kmsg_seq() -> int:
    with KmsgTail(from_start=True) as tail:
        return tail.read_new()[0].seq


@pytest.mark.skipif(
    os.environ.get("OOMLAB_KMSG_FLOOD") != "1",
    reason="floods the shared kernel ring buffer; set OOMLAB_KMSG_FLOOD=1 to run",
)
def test_row5_service_stopped_past_the_ring_counts_the_gap_exactly_and_loses_nothing_after_it(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = unique_topic("fm-r5-overrun")
    marker = comm_for("r5mark", 0)
    service = kafka_service(tmp_path, kafka_bootstrap, topic)
    try:
        wait_checkpoint(tmp_path)
        with KmsgTail() as tail:
            write_kmsg_lines([f"{marker} before"])
            [mark] = [
                r for r in tail.wait_for(lambda r: marker.encode() in r.text) if marker.encode() in r.text
            ]
        deadline = time.monotonic() + 15
        while int(checkpoint_of(tmp_path)["seq"]) < mark.seq:  # type: ignore[call-overload, index]
            assert time.monotonic() < deadline, "the service did not read up to the marker"
            time.sleep(0.2)
        service.signal(signal.SIGSTOP)
        try:
            lost_kill = cause_kill(comm_for("r5lost", 0))
            # Twice the 128 KiB ring and more: everything before, the kill included, is overwritten.
            write_kmsg_lines([f"{marker} fill {n} {'x' * 900}" for n in range(600)])
            kept_kill = cause_kill(comm_for("r5kept", 0))
            oldest = oldest_kmsg_seq()
        finally:
            service.signal(signal.SIGCONT)
        took = service.wait_published([kept_kill.comm], timeout=30)
        assert took < QUIET_NODE_SECONDS
        found = service.wait_log(r"kmsg: lost (\d+) kernel records \(seq (\d+)\.\.(\d+)\)", 10)
        lost, first, last = (int(group) for group in found.groups())
        # Exactly the records the ring no longer held: from the one after the last read to the
        # one before the oldest still there when the service resumed.
        assert first > mark.seq and last == oldest - 1 and lost == last - first + 1
        time.sleep(1.0)
        metrics = service.metrics()
        assert metrics['oomstream_source_lost_records_total{source="kmsg"}'] == lost
        assert metrics['oomstream_source_gaps_total{source="kmsg"}'] == 1
        assert len(re.findall(r"lost \d+ kernel records", service.log)) == 1  # logged once
    finally:
        code, _ = service.stop()
    assert code == 0, service.tail()
    events = events_in(kafka_bootstrap, topic)
    assert_each_published_once(events, [kept_kill])
    assert not events_of(events, [lost_kill])[lost_kill.comm], "a kill the ring had dropped was published"
