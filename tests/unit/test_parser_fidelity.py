"""Issue 10: no kill lost in the shapes real logs take.

One section per class: summary-only logs, a bare kill line first, comms holding a newline
(continuation lines, journalctl blobs), dmesg -T in any locale, table exports newest first. Each
has fixture tests (tests/data/{filtered,locales,exports}, provenance in tests/data/README.md) and a
property test.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.events import OomEvent
from parsers.framing import Framer
from parsers.oom import SUMMARY_ONLY_REASON
from streamer.cli import cmd_parse
from streamer.inputs import ScanOptions, events_from_bytes

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = DATA / "real"
UTC_OPTIONS = ScanOptions(tz=UTC, year=2026)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Kernel format strings (mm/oom_kill.c): the 5.0+ summary, and the kill line of each generation.
SUMMARY = (
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    "oom_memcg={memcg},task_memcg={memcg}/{cid},task={comm},pid={pid},uid={uid}"
)
KILL_VARIANTS = {
    # RHEL 7 (3.10): no message prefix, UID before the figures.
    "rhel7": "Killed process {pid} ({comm}), UID 0, total-vm:75160kB, anon-rss:65152kB, file-rss:6604kB, "
    "shmem-rss:0kB",
    # 4.5 .. 5.0: the unprefixed line after "Kill process ... or sacrifice child".
    "4.x": "Killed process {pid} ({comm}) total-vm:75160kB, anon-rss:65152kB, file-rss:6604kB, shmem-rss:0kB",
    # 3.x before shmem-rss.
    "3.x": "Killed process {pid} ({comm}) total-vm:75160kB, anon-rss:65152kB, file-rss:6604kB",
    # 5.1 .. 5.3: the message prefix.
    "5.1": "Out of memory: Killed process {pid} ({comm}) total-vm:75160kB, anon-rss:65152kB, "
    "file-rss:6604kB, shmem-rss:0kB",
    # 5.4+: UID, pgtables, oom_score_adj.
    "5.4": "Memory cgroup out of memory: Killed process {pid} ({comm}) total-vm:75160kB, anon-rss:65152kB, "
    "file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:184kB oom_score_adj:968",
    # <= 5.0: the "Kill process" line alone (its unprefixed "Killed process" line filtered out).
    "sacrifice": "Memory cgroup out of memory: Kill process {pid} ({comm}) score 1000 or sacrifice child",
    # oom_kill_allocating_task.
    "alloc": "Out of memory (oom_kill_allocating_task): Killed process {pid} ({comm}) total-vm:75160kB, "
    "anon-rss:65152kB, file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:184kB oom_score_adj:0",
}
# The wrappers every input format puts around a kernel message (t: kernel seconds).
WRAPPERS = {
    "bare": "{msg}",
    "dmesg": "[{t:12.6f}] {msg}",
    "dmesg-raw-prio": "<3>[{t:12.6f}] {msg}",
    "dmesg-T": "[Sun Mar  3 09:15:02 2024] {msg}",
    "kmsg": "3,5120,{usec},-;{msg}",
    "syslog-file": "Mar  3 09:15:02 node-1 kernel: {msg}",
    "kern-log-stamped": "Mar  3 09:15:02 node-1 kernel: [{t:12.6f}] {msg}",
    "rfc3339-file": "2024-03-03T09:15:02.118233+00:00 node-1 kernel: [{t:12.6f}] {msg}",
    "syslog-3164-prio": "<3>Mar  3 09:15:02 node-1 kernel: {msg}",
    "syslog-5424": "<3>1 2024-03-03T09:15:02.118233+00:00 node-1 kernel - - - {msg}",
    "journal-short-monotonic": "[{t:12.6f}] node-1 kernel: {msg}",
    "journal-short-iso": "2024-03-03T09:15:02+0000 node-1 kernel: {msg}",
    "kibana-row": "Mar 3, 2024 @ 09:15:02.118 | node-1 | kernel | [{t:12.6f}] {msg}",
    "logcli": '2024-03-03T09:15:02Z {{host="node-1", job="varlogs"}} Mar  3 09:15:02 node-1 kernel: {msg}',
}
ALL_WRAPPER_NAMES = [*WRAPPERS, "journal-json"]
NOISE = [
    "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
    "cni0: port 1(veth0766fe38) entered blocking state",
    "EXT4-fs (sda1): re-mounted. Opts: errors=remount-ro. Quota mode: none.",
    "this will fill the log",
]


def wrap(wrapper: str, message: str, t: float) -> str:
    if wrapper == "journal-json":
        return json.dumps(
            {"MESSAGE": message, "_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "PRIORITY": "3",
             "_SOURCE_MONOTONIC_TIMESTAMP": str(int(t * 1e6)), "_HOSTNAME": "node-1"}
        )  # fmt: skip
    return WRAPPERS[wrapper].format(msg=message, t=t, usec=int(t * 1e6))


def parse(data: str | bytes, options: ScanOptions = UTC_OPTIONS) -> list[OomEvent]:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return events_from_bytes(raw, options)


def victims(events: list[OomEvent]) -> list[tuple[int | None, str | None]]:
    return [(e.victim.pid, e.victim.comm) for e in events if e.victim is not None]


def parse_summary_text(path: Path) -> str:
    """The end-of-run summary `oomstream parse` prints for one file."""
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(
        files=[str(path)], format="auto", host=None, boot_id=None, year=2026, tz="UTC", max_tasks=20,
        max_line_bytes=1 << 20,
    )  # fmt: skip
    assert cmd_parse(args, out, err) == 0
    return err.getvalue()


# -- 1. a summary line with no kill line ----------------------------------------------------------


def test_summary_only_lines_hours_apart_are_two_kills() -> None:
    first = SUMMARY.format(memcg="/kubepods/burstable/pod1", cid="c1", comm="python3", pid=111, uid=0)
    second = SUMMARY.format(memcg="/kubepods/besteffort/pod2", cid="c2", comm="java", pid=222, uid=1000)
    log = (
        f"Mar  3 09:15:02 node-1 kernel: [  100.000000] {first}\n"
        f"Mar  3 12:15:02 node-1 kernel: [ 9000.000000] {second}\n"
    )
    events = parse(log)
    assert [(e.victim.pid, e.victim.comm, e.victim.uid) for e in events if e.victim] == [
        (111, "python3", 0),
        (222, "java", 1000),
    ]
    assert [e.cgroup.task_memcg for e in events] == [
        "/kubepods/burstable/pod1/c1",
        "/kubepods/besteffort/pod2/c2",
    ]
    assert [e.cgroup.oom_memcg for e in events] == ["/kubepods/burstable/pod1", "/kubepods/besteffort/pod2"]
    assert all(e.partial and e.partial_reason == SUMMARY_ONLY_REASON for e in events)
    assert all(e.constraint == "CONSTRAINT_MEMCG" for e in events)


def test_summary_then_a_kill_of_another_pid_is_two_kills() -> None:
    summary = SUMMARY.format(memcg="/a", cid="b", comm="first", pid=10, uid=0)
    kill = KILL_VARIANTS["5.4"].format(pid=20, comm="second")
    events = parse(f"[ 1.000000] {summary}\n[ 1.500000] {kill}\n")
    assert victims(events) == [(10, "first"), (20, "second")]
    assert events[0].partial and not events[1].partial
    assert events[1].cgroup.task_memcg is None  # the summary was not this victim's


def test_summary_and_its_kill_line_stay_one_event() -> None:
    summary = SUMMARY.format(memcg="/a", cid="b", comm="x", pid=10, uid=0)
    events = parse(f"[ 1.000000] {summary}\n[ 1.000100] {KILL_VARIANTS['5.4'].format(pid=10, comm='x')}\n")
    assert victims(events) == [(10, "x")] and not events[0].partial
    assert events[0].cgroup.task_memcg == "/a/b"


def test_a_grep_oom_kill_filtered_real_log_gives_every_summarised_kill() -> None:
    """`grep oom-kill` of a real storm capture keeps the 11 headers and 11 summaries; every
    summary is a kill (the other 50 kills had their header and summary rate-limited)."""
    events = parse((DATA / "filtered" / "s08-storm.grep-oom-kill.kern-log").read_bytes())
    meta = json.loads((REAL / "s08-storm.meta.json").read_text())
    assert len(events) == 11
    assert all(e.victim is not None and e.victim.pid in meta["expected"]["victim_pids"] for e in events)
    assert len({e.victim.pid for e in events if e.victim}) == 11
    assert all(e.trigger is not None and e.cgroup.task_memcg for e in events)
    assert "kills known only from their oom-kill: summary line" in parse_summary_text(
        DATA / "filtered" / "s08-storm.grep-oom-kill.kern-log"
    )


summaries = st.lists(
    st.tuples(
        st.integers(1, 4_000_000),
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=15),
        st.integers(0, 65535),
        st.floats(0.0, 50_000.0),
    ),
    min_size=1,
    max_size=8,
)


# The summary of each generation: 4.19 (no cgroup paths), 5.0+ memcg, 5.0+ global.
SUMMARY_FORMS = {
    "4.19": "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
    "task={comm},pid={pid},uid={uid}",
    "memcg": SUMMARY.replace("{memcg}/{cid}", "/m{pid}/c").replace("{memcg}", "/m{pid}"),
    "global": "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,"
    "task_memcg=/m{pid}/c,task={comm},pid={pid},uid={uid}",
}


@PROPERTY
@given(
    summaries,
    st.lists(st.sampled_from(list(SUMMARY_FORMS)), min_size=8, max_size=8),
    st.sampled_from([w for w in ALL_WRAPPER_NAMES if w != "bare"]),
    st.lists(st.sampled_from(NOISE), max_size=10),
    st.randoms(use_true_random=False),
)
def test_property_every_summary_alone_is_one_kill(
    items: list[tuple[int, str, int, float]],
    forms: list[str],
    wrapper: str,
    noise: list[str],
    rnd: random.Random,
) -> None:
    lines: list[tuple[float, str]] = []
    t = 1.0
    for (pid, comm, uid, gap), form in zip(items, forms, strict=False):
        t += gap
        lines.append((t, SUMMARY_FORMS[form].format(comm=comm, pid=pid, uid=uid)))
    for text in noise:
        at = rnd.randrange(len(lines) + 1)
        lines.insert(at, (lines[at - 1][0] if at else 0.5, text))
    events = parse("".join(wrap(wrapper, text, t) + "\n" for t, text in lines))
    got = [(e.victim.pid, e.victim.comm, e.victim.uid, e.cgroup.task_memcg) for e in events if e.victim]
    want = [
        (pid, comm, uid, None if form == "4.19" else f"/m{pid}/c")
        for (pid, comm, uid, _), form in zip(items, forms, strict=False)
    ]
    assert got == want and len(events) == len(items)
    assert all(e.partial_reason == SUMMARY_ONLY_REASON for e in events)


# -- 2. a bare kill line first ----------------------------------------------------------------------

ALL_WRAPPERS = ALL_WRAPPER_NAMES


@pytest.mark.parametrize("variant", list(KILL_VARIANTS))
@pytest.mark.parametrize("wrapper", ALL_WRAPPERS)
def test_a_bare_kill_line_first_is_an_event(variant: str, wrapper: str) -> None:
    kill = wrap(wrapper, KILL_VARIANTS[variant].format(pid=4242, comm="java"), 812.5)
    for log in (kill + "\n", kill, kill + "\n" + wrap(wrapper, NOISE[0], 813.0) + "\n"):
        events = parse(log)
        assert victims(events) == [(4242, "java")], (variant, wrapper, log)


@PROPERTY
@given(
    st.sampled_from(list(KILL_VARIANTS)),
    st.sampled_from(ALL_WRAPPERS),
    st.lists(st.sampled_from(NOISE), max_size=12),
    st.integers(0, 12),
    st.integers(1, 4_000_000),
)
def test_property_a_bare_kill_line_anywhere_is_one_event(
    variant: str, wrapper: str, noise: list[str], position: int, pid: int
) -> None:
    lines = [wrap(wrapper, text, 10.0 + i) for i, text in enumerate(noise)]
    position = min(position, len(lines))
    lines.insert(position, wrap(wrapper, KILL_VARIANTS[variant].format(pid=pid, comm="a b"), 10.0 + position))
    assert victims(parse("\n".join(lines) + "\n")) == [(pid, "a b")]


# -- 3. a comm that holds a newline -----------------------------------------------------------------

NEWLINE_FORMATS = [
    "dmesg",
    "dmesg-T",
    "journal-short.txt",
    "journal-short-iso.txt",
    "journal-short-precise.txt",
    "journal-short-monotonic.txt",
]


@pytest.mark.parametrize("suffix", NEWLINE_FORMATS)
def test_real_newline_comm_is_whole_in_trigger_victim_and_cgroup(suffix: str) -> None:
    """s06c: a genuine kill of a process named "nl\\nfake: line"; dmesg and journalctl print the
    rest of each record on an indented continuation line."""
    events = parse((REAL / f"s06c-control-comms.{suffix}").read_bytes())
    newline = [e for e in events if e.victim is not None and e.victim.pid == 3440]
    assert len(newline) == 1 and len(events) == 3
    event = newline[0]
    assert event.victim is not None and event.victim.comm == "nl\nfake: line"
    assert event.trigger is not None and event.trigger.comm == "nl\nfake: line"
    assert (
        event.trigger.pid == 3440 and event.cgroup.task_memcg and event.cgroup.task_memcg.endswith("2d5fe322")
    )
    assert event.tasks is not None and any(row.name == "nl\nfake: line" for row in event.tasks)


def continued(prefix: str, message: str) -> str:
    """How dmesg and journalctl print a record holding newlines: the rest indented by the prefix."""
    first, *rest = message.split("\n")
    return "\n".join([prefix + first, *(" " * len(prefix) + part for part in rest)])


REPORT_LINES = [
    "{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    "CPU: 0 UID: 0 PID: {pid} Comm: {comm} Not tainted 6.18.44 #1 PREEMPT(none)",
    "memory: usage 49152kB, limit 49152kB, failcnt 52",
    SUMMARY.replace("{pid}", "{pid}").format(memcg="/k", cid="c", comm="{comm}", pid="{pid}", uid=0),
    "Memory cgroup out of memory: Kill process {pid} ({comm}) score 999 or sacrifice child",
    KILL_VARIANTS["4.x"],
    "oom_reaper: reaped process {pid} ({comm}), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
]


@PROPERTY
@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=5).filter(
            lambda part: part.strip() == part
        ),
        min_size=2,
        max_size=3,
    ).map("\n".join),
    st.integers(2, 4_000_000),
    st.sampled_from(["dmesg", "journal-short-monotonic", "journal-short"]),
)
def test_property_newline_comms_are_rejoined(comm: str, pid: int, fmt: str) -> None:
    lines = []
    for i, template in enumerate(REPORT_LINES):
        message = template.format(comm=comm, pid=pid)
        t = 100.0 + i / 1000
        prefix = {
            "dmesg": f"[{t:12.6f}] ",
            "journal-short-monotonic": f"[{t:12.6f}] node-1 kernel: ",
            "journal-short": "Mar  3 09:15:02 node-1 kernel: ",
        }[fmt]
        lines.append(continued(prefix, message))
    events = parse("\n".join(lines) + "\n")
    assert len(events) == 1
    event = events[0]
    assert event.victim is not None and event.victim.comm == comm and event.victim.pid == pid
    assert event.trigger is not None and event.trigger.comm == comm
    assert event.victim.score == 999 and event.cgroup.task_memcg == "/k/c"
    assert event.reaped is not None


def test_journalctl_blobs_are_counted_and_reported() -> None:
    """s06b: journalctl without --all prints the records of a comm cut mid-character as
    "[NB blob data]"; the summary says how many records were unreadable."""
    for suffix in ("journal-short.txt", "journal-short-iso.txt", "journal-short-monotonic.txt"):
        summary = parse_summary_text(REAL / f"s06b-utf8-comms.{suffix}")
        assert "journal_blob=5" in summary and "warning: 5 unreadable records" in summary, summary
    framer = Framer()
    assert framer.frame("[  87.622107] node-1 kernel: [1.2K blob data]") is None
    assert framer.frame("[88B blob data]") is None
    assert framer.skipped["journal_blob"] == 2


# -- 4. dmesg -T in any locale ----------------------------------------------------------------------


def stamp_rows() -> list[tuple[str, int, str]]:
    rows = []
    for line in (DATA / "locales" / "dmesg-T-stamps.tsv").read_text(encoding="utf-8").splitlines():
        locale, epoch, stamp = line.split("\t")
        rows.append((locale, int(epoch), stamp))
    return rows


def test_every_glibc_stamp_of_utillinux_languages_is_read() -> None:
    """744 stamps strftime printed in the 30 languages util-linux is translated to (and C)."""
    framer = Framer("auto", tz=UTC)
    rows = stamp_rows()
    assert len({locale for locale, _, _ in rows}) == 31
    for locale, epoch, stamp in rows:
        record = framer.frame(f"[{stamp}] Out of memory: Killed process 1 (x)")
        assert record is not None and record.format == "dmesg-T", (locale, stamp)
        assert record.wall_time == epoch and record.message == "Out of memory: Killed process 1 (x)", (
            locale,
            stamp,
        )


@pytest.mark.parametrize(
    "path", sorted((DATA / "locales").glob("s01-cgroupfs-burstable.dmesg-T.*")), ids=lambda p: p.suffix[1:]
)
def test_real_dmesg_T_report_reads_the_same_in_every_locale(path: Path) -> None:
    reference = parse((DATA / "locales" / "s01-cgroupfs-burstable.dmesg-T.C").read_bytes())
    events = parse(path.read_bytes())
    assert len(events) == len(reference) == 1
    got, want = events[0], reference[0]
    assert got.time == want.time and got.time is not None
    assert got.constraint == want.constraint == "CONSTRAINT_MEMCG"
    assert got.cgroup.task_memcg == want.cgroup.task_memcg and got.cgroup.task_memcg
    assert got.victim == want.victim and got.trigger == want.trigger


def test_day_first_stamp_and_unreadable_dates() -> None:
    framer = Framer("auto", tz=UTC)
    record = framer.frame(
        "[mer. 3 déc. 14:05:09 2025] oom-kill:constraint=CONSTRAINT_MEMCG,task=x,pid=1,uid=0"
    )
    assert record is not None and record.wall_time == datetime(2025, 12, 3, 14, 5, 9, tzinfo=UTC).timestamp()
    assert record.message.startswith("oom-kill:")
    unknown = framer.frame("[Xyz Qqq  4 05:05:56 2026] Memory cgroup out of memory: Killed process 5 (y)")
    assert unknown is not None and unknown.format == "dmesg-T" and unknown.wall_time is None
    assert unknown.message.startswith("Memory cgroup")
    assert framer.unread_times == {"dmesg_T_unknown_month": 1}


LOCALE_NAMES: dict[str, tuple[dict[int, str], dict[int, str]]] = {}


def locale_names() -> dict[str, tuple[dict[int, str], dict[int, str]]]:
    """Each locale's month and weekday names as glibc printed them (from the stamps fixture)."""
    if not LOCALE_NAMES:
        for locale, epoch, stamp in stamp_rows():
            moment = datetime.fromtimestamp(epoch, UTC)
            head = stamp[: stamp.index(f"{moment.hour:02d}:")].split()
            months, days = LOCALE_NAMES.setdefault(locale, ({}, {}))
            days[moment.weekday()] = head[0]
            months[moment.month] = " ".join(head[1:-1])
    return LOCALE_NAMES


@PROPERTY
@given(
    st.sampled_from(sorted({row[0] for row in stamp_rows()})),
    st.datetimes(datetime(1995, 1, 1), datetime(2037, 12, 31)),
    st.booleans(),
)
def test_property_dmesg_T_any_locale_either_order(locale: str, moment: datetime, day_first: bool) -> None:
    months, days = locale_names()[locale]
    if moment.weekday() not in days:
        return
    moment = moment.replace(microsecond=0)
    month, day = months[moment.month], f"{moment.day:2d}"
    middle = f"{day} {month}" if day_first else f"{month} {day}"
    text = f"[{days[moment.weekday()]} {middle} {moment:%H:%M:%S} {moment.year}] kernel text"
    record = Framer("auto", tz=UTC).frame(text)
    assert record is not None and record.message == "kernel text"
    assert record.wall_time == moment.replace(tzinfo=UTC).timestamp(), text


# -- 5. table exports -------------------------------------------------------------------------------


def facts(events: list[OomEvent]) -> list[tuple[object, ...]]:
    return sorted(
        (
            e.victim.pid if e.victim else None,
            e.victim.comm if e.victim else None,
            e.cgroup.task_memcg,
            e.constraint,
            e.kernel_time,
            e.trigger.comm if e.trigger else None,
            e.partial,
        )
        for e in events
    )


@pytest.mark.parametrize(
    "path", sorted(p for p in (DATA / "exports").iterdir() if p.suffix != ".md"), ids=lambda p: p.name
)
def test_real_table_exports_newest_first_give_the_journal_events(path: Path) -> None:
    name = path.name.split(".")[0]
    reference = parse((REAL / f"{name}.journal.json").read_bytes())
    meta = json.loads((REAL / f"{name}.meta.json").read_text())
    events = parse(path.read_bytes())
    assert len(events) == meta["expected"]["kills"] == len(reference)
    assert facts(events) == facts(reference)
    assert all(e.time is not None and e.host == "vm" for e in events)
    # Oldest first (the file turned around) reads the same.
    lines = path.read_bytes().splitlines(keepends=True)
    header = lines[:1] if path.suffix == ".csv" else []
    assert facts(parse(b"".join(header + lines[len(header) :][::-1]))) == facts(reference)


def test_table_summary_says_the_export_was_reversed() -> None:
    summary = parse_summary_text(DATA / "exports" / "s05b-victim-not-trigger.kibana.csv")
    assert "table export listed newest first: 176 rows put back in log order" in summary


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(1, 4_000_000), st.sampled_from(["h1", "h2"]), st.booleans()),
        min_size=1,
        max_size=6,
        unique_by=lambda x: x[0],
    ),
    st.booleans(),
    st.sampled_from(["pipe", "csv", "logcli", "elasticsearch", "logcli-jsonl"]),
    st.randoms(use_true_random=False),
)
def test_property_table_exports_in_any_order_lose_and_invent_no_kill(
    kills: list[tuple[int, str, bool]], newest_first: bool, layout: str, rnd: random.Random
) -> None:
    rows: list[tuple[float, str, float, str]] = []  # wall, host, kernel time, message
    clock = {"h1": 1000.0, "h2": 2000.0}
    wall = 1_709_457_302.0
    for pid, host, with_summary in kills:
        wall += rnd.choice([0.0, 0.001, 0.5, 30.0])
        messages = ["python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"]
        if with_summary:
            messages.append(SUMMARY.format(memcg=f"/m{pid}", cid="c", comm="python3", pid=pid, uid=0))
        messages.append(KILL_VARIANTS["5.4"].format(pid=pid, comm="python3"))
        for message in messages:
            clock[host] += 0.000137
            # Exports keep milliseconds: a whole report often shares one wall time.
            rows.append((wall, host, clock[host], message))
    rows.sort(key=lambda row: row[0], reverse=newest_first)

    def render(wall: float, host: str, kernel: float, message: str) -> str:
        moment = datetime.fromtimestamp(wall, UTC)
        stamp = f"[{kernel:12.6f}] {message}"
        if layout == "pipe":
            kibana = f"{moment:%b} {moment.day}, {moment:%Y @ %H:%M:%S}.{moment.microsecond // 1000:03d}"
            return f"{kibana} | {host} | kernel | {stamp}"
        if layout == "csv":
            return f'"{moment.isoformat(timespec="milliseconds")}","{host}","{stamp}"'
        if layout == "elasticsearch":
            source = {"@timestamp": int(wall * 1000), "host": {"name": host}, "message": stamp}
            return json.dumps({"_source": source})
        if layout == "logcli-jsonl":
            return json.dumps({"labels": {"host": host}, "line": stamp, "timestamp": f"{int(wall * 1e9)}"})
        return f'{moment:%Y-%m-%dT%H:%M:%SZ} {{host="{host}"}} {stamp}'

    header = ['"_time","host","_raw"'] if layout == "csv" else []
    events = parse("\n".join(header + [render(*row) for row in rows]) + "\n")
    got = sorted((e.victim.pid, e.host, e.cgroup.task_memcg) for e in events if e.victim)
    want = sorted((pid, host, f"/m{pid}/c" if with_summary else None) for pid, host, with_summary in kills)
    assert got == want and len(events) == len(kills)
