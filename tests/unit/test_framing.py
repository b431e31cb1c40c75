"""Framing of every input format into KernelRecord."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from parsers.framing import Framer

KILL = (
    "Memory cgroup out of memory: Killed process 2031 (python3) total-vm:75160kB, anon-rss:65152kB, "
    "file-rss:6604kB, shmem-rss:0kB, UID:0 pgtables:184kB oom_score_adj:0"
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_kmsg_record_with_escapes_and_facility() -> None:
    framer = Framer()
    record = framer.frame(f"3,415,87622107,-;{KILL}".encode(), 100)
    assert record is not None
    assert record.format == "kmsg"
    assert record.message == KILL
    assert record.kernel_time == pytest.approx(87.622107)
    assert record.level == 3 and record.facility == 0 and record.trusted
    assert record.position is not None and record.position.seq == 415 and record.position.offset == 100
    escaped = framer.frame(b"6,91,306614,-;\\x09Trampoline w\\xc3\\xb6rker \\xff end")
    assert escaped is not None
    assert escaped.message == "\tTrampoline wörker \\xff end"


def test_kmsg_dictionary_lines_are_metadata() -> None:
    framer = Framer()
    assert framer.frame(b"6,187,376308,-;acpi PNP0A08:00: _OSC: OS supports") is not None
    assert framer.frame(b" SUBSYSTEM=acpi") is None
    assert framer.frame(b" DEVICE=+acpi:PNP0A08:00") is None
    assert framer.skipped["kmsg_dictionary"] == 2


def test_kmsg_from_user_space_is_untrusted() -> None:
    # `echo ... > /dev/kmsg` gets facility LOG_USER: prio 14 = (1 << 3) | 6.
    record = Framer().frame(f"14,500,9000000,-;{KILL}".encode())
    assert record is not None and not record.trusted and record.facility == 1


def test_dmesg_and_raw_prio_and_continuation() -> None:
    framer = Framer()
    record = framer.frame(f"[   87.622107] {KILL}".encode())
    assert record is not None and record.format == "dmesg"
    assert record.kernel_time == pytest.approx(87.622107) and record.message == KILL
    raw = framer.frame(f"<3>[   87.622107] {KILL}".encode())
    assert raw is not None and raw.level == 3 and raw.message == KILL
    framer.frame(b"[  100.000001] Memory cgroup stats for /a: cache:0KB")
    cont = framer.frame(b"               rss:1024KB")
    assert cont is not None and cont.message == "rss:1024KB" and cont.kernel_time == pytest.approx(100.000001)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[Fri Nov 27 16:59:20 2026] x", "2026-11-27T16:59:20+00:00"),
        ("[Mon Jan  5 01:02:03 2026] x", "2026-01-05T01:02:03+00:00"),
        ("[月 1月 26 01:49:41 2026] x", "2026-01-26T01:49:41+00:00"),
        ("[2026-11-27 16:59:20,123456] x", "2026-11-27T16:59:20.123456+00:00"),
    ],
)
def test_dmesg_t_locales(line: str, expected: str) -> None:
    record = Framer(tz=UTC).frame(line.encode())
    assert record is not None and record.format == "dmesg-T" and record.message == "x"
    assert record.wall_time == pytest.approx(ts(expected))
    assert record.time_source == "dmesg_T"


def test_syslog_rfc3164_with_kernel_time_and_rsyslog_escape() -> None:
    framer = Framer(year=2026, tz=UTC)
    record = framer.frame(f"Nov 27 16:59:20 node-1 kernel: [   87.622107] {KILL}".encode())
    assert record is not None and record.format == "syslog-3164"
    assert record.host == "node-1" and record.message == KILL
    assert record.kernel_time == pytest.approx(87.622107)
    assert record.wall_time == pytest.approx(ts("2026-11-27T16:59:20+00:00"))
    nospace = framer.frame(b"Nov  2 01:00:00 h kernel:Memory cgroup stats for /x:#012anon 1")
    assert nospace is not None and nospace.message == "Memory cgroup stats for /x:\nanon 1"
    pri = framer.frame(b"<3>Nov 27 16:59:20 h kernel: hello")
    assert pri is not None and pri.facility == 0 and pri.level == 3 and pri.trusted


def test_syslog_high_precision_and_rfc5424() -> None:
    framer = Framer()
    record = framer.frame(b"2026-11-27T16:59:20.123456+01:00 node-1 kernel: [  1.5] hi")
    assert record is not None and record.message == "hi" and record.kernel_time == 1.5
    assert record.wall_time == pytest.approx(ts("2026-11-27T15:59:20.123456+00:00"))
    r5424 = framer.frame(b"<3>1 2026-11-27T16:59:20.5Z node-2 kernel - - - " + KILL.encode())
    assert r5424 is not None and r5424.format == "syslog-5424" and r5424.message == KILL
    assert r5424.host == "node-2" and r5424.level == 3 and r5424.trusted
    sd = framer.frame(b'<4>1 2026-11-27T16:59:20Z n kernel - - [meta x="1"] [ 2.0] msg')
    assert sd is not None and sd.message == "msg" and sd.kernel_time == 2.0
    fake = framer.frame(b"<14>1 2026-11-27T16:59:20Z n kernel - - - " + KILL.encode())
    assert fake is not None and not fake.trusted


def test_syslog_other_tags_are_not_kernel_records() -> None:
    framer = Framer()
    assert framer.frame(b"Nov 27 16:59:20 h systemd[1]: Started foo.") is None
    assert framer.frame(f"Nov 27 16:59:20 h evil[7]: {KILL}".encode()) is None
    assert framer.skipped["not_kernel"] == 2 and framer.skipped["untrusted_oom_line"] == 1


def test_journalctl_short_variants() -> None:
    framer = Framer("journalctl", year=2026, tz=UTC)
    short = framer.frame(b"Nov 27 16:59:20 node-1 kernel: hello")
    assert short is not None and short.format == "journalctl-short"
    iso = framer.frame(b"2026-11-27T16:59:20+0000 node-1 kernel: hello")
    assert iso is not None and iso.format == "journalctl-short-iso"
    assert iso.wall_time == pytest.approx(ts("2026-11-27T16:59:20+00:00"))
    precise = framer.frame(b"Nov 27 16:59:20.654321 node-1 kernel: hello")
    assert precise is not None and precise.format == "journalctl-short-precise"
    assert precise.wall_time == pytest.approx(ts("2026-11-27T16:59:20.654321+00:00"))
    mono = framer.frame(b"[   87.622107] node-1 kernel: hello")
    assert mono is not None and mono.format == "journalctl-short-monotonic"
    assert mono.kernel_time == pytest.approx(87.622107) and mono.host == "node-1"
    # journalctl indents a record's further lines by the prefix's width; spaces beyond it are text.
    cont = framer.frame(b" " * len("[   87.622107] node-1 kernel: ") + b"second line")
    assert cont is not None and cont.message == "second line" and cont.host == "node-1"
    assert cont.continuation and not mono.continuation
    deeper = framer.frame(b" " * len("[   87.622107] node-1 kernel: ") + b"  third")
    assert deeper is not None and deeper.message == "  third"
    assert framer.frame(b"-- Boot 0123456789abcdef0123456789abcdef --") is None
    after = framer.frame(b"Nov 27 16:59:21 node-1 kernel: x")
    assert after is not None and after.boot_id == "0123456789abcdef0123456789abcdef"


def test_auto_detects_short_monotonic() -> None:
    record = Framer().frame(b"[   87.622107] node-1 kernel: hello")
    assert record is not None and record.format == "journalctl-short-monotonic"


def entry(**fields: object) -> bytes:
    base: dict[str, object] = {
        "__CURSOR": "s=abc;i=1f",
        "__REALTIME_TIMESTAMP": "1795791560123456",
        "_SOURCE_MONOTONIC_TIMESTAMP": "87622107",
        "_BOOT_ID": "5d3c0b1e9a2f4c7e8b6d1a0f2e3c4b5a",
        "_HOSTNAME": "node-1",
        "PRIORITY": "3",
        "_TRANSPORT": "kernel",
        "MESSAGE": KILL,
    }
    base.update(fields)
    return orjson.dumps(base)


def test_journal_json_string_and_byte_array_messages() -> None:
    framer = Framer()
    record = framer.frame(entry())
    assert record is not None and record.format == "journal-json" and record.message == KILL
    assert record.kernel_time == pytest.approx(87.622107)
    assert record.wall_time == pytest.approx(1795791560.123456)
    assert record.boot_id == "5d3c0b1e9a2f4c7e8b6d1a0f2e3c4b5a" and record.host == "node-1"
    assert record.position is not None and record.position.cursor == "s=abc;i=1f"
    raw = list("Killed process 5 (w\u00f6rker) x".encode()) + [0xFF]
    array = framer.frame(entry(MESSAGE=raw))
    assert array is not None and array.message == "Killed process 5 (wörker) x\\xff"


def test_journal_json_other_transport_claiming_kernel_is_untrusted() -> None:
    framer = Framer()
    assert framer.frame(entry(_TRANSPORT="syslog", SYSLOG_IDENTIFIER="kernel")) is None
    assert framer.frame(entry(_TRANSPORT="stdout", SYSLOG_IDENTIFIER="app", MESSAGE="hi")) is None
    assert framer.skipped["untrusted"] == 1 and framer.skipped["untrusted_oom_line"] == 1
    assert framer.skipped["not_kernel"] == 1
    assert framer.frame(b"{not json") is None and framer.skipped["bad_json"] == 1


def test_plain_and_forced_format_mismatch_keeps_the_line() -> None:
    framer = Framer("dmesg")
    record = framer.frame(KILL.encode())
    assert record is not None and record.format == "plain" and record.message == KILL
    assert framer.skipped["format_mismatch"] == 1
    auto = Framer().frame(KILL.encode())
    assert auto is not None and auto.format == "plain"


def test_invalid_utf8_is_kept_escaped() -> None:
    record = Framer().frame(b"[ 1.0] Killed process 7 (a\xffb) total-vm:1kB")
    assert record is not None and "a\\xffb" in record.message


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        Framer("xml")


def test_journal_json_user_space_kmsg_write_is_untrusted() -> None:
    # `echo ... > /dev/kmsg` lands in journald with _TRANSPORT=kernel but SYSLOG_FACILITY=1.
    record = Framer().frame(entry(SYSLOG_FACILITY="1"))
    assert record is not None and not record.trusted and record.facility == 1
    kernel = Framer().frame(entry(SYSLOG_FACILITY="0"))
    assert kernel is not None and kernel.trusted
