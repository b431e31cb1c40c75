"""parsers.shipper: RFC 6587 framing and shipper envelopes, on examples and on generated input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shippers.envelopes import BUILDERS, KEEPS_KERNEL_TIME, dmesg_lines

from parsers.framing import Framer
from parsers.oom import Assembler
from parsers.records import SourcePosition
from parsers.shipper import EnvelopeFramer, SyslogFrameSplitter, envelope_shape, iso_seconds
from streamer.inputs import events_from_bytes

SAMPLE = Path(__file__).parents[2] / "streamer" / "samples" / "6.18-pod-limit.dmesg"
POSITION = SourcePosition("http", 0)


def octet(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def split_all(
    data: bytes, cuts: list[int], max_frame: int = 1 << 16
) -> tuple[list[bytes], SyslogFrameSplitter]:
    splitter = SyslogFrameSplitter(max_frame)
    frames: list[bytes] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        frames += splitter.feed(data[start:cut])
        start = max(start, cut)
    frames += splitter.feed(data[start:])
    last = splitter.finish()
    if last is not None:
        frames.append(last)
    return frames, splitter


def test_octet_counting_and_newline_framing_mix_in_one_stream() -> None:
    a = b"<6>1 2026-12-04T05:00:00Z h1 kernel - - - line with\nan embedded newline"
    b = b"<6>Dec  4 05:00:00 h2 kernel: plain"
    c = b"2026-12-04T05:00:00+00:00 h3 kernel: rfc3339 file format"
    frames, splitter = split_all(octet(a) + b + b"\r\n" + c + b"\n" + octet(b + b"\n"), [])
    assert frames == [a, b, c, b]
    assert splitter.counts["frames_octet_counted"] == 2
    assert splitter.counts["frames_newline"] == 2


def test_oversized_and_garbled_frames_are_counted_and_the_good_ones_kept() -> None:
    good = b"<6>Dec  4 05:00:00 h kernel: after"
    stream = octet(b"x" * 100) + b"y" * 150 + b"\n" + good + b"\n" + b"99999999999 nonsense\n" + octet(good)
    frames, splitter = split_all(stream, [3, 50, 120], max_frame=64)
    assert frames == [good, b"99999999999 nonsense", good]
    assert splitter.counts["oversized_frames"] == 2


def test_a_frame_cut_short_at_end_of_stream_is_counted_not_delivered() -> None:
    frames, splitter = split_all(b"40 <6>Dec  4 05:00:00 h kernel: cut", [])
    assert frames == []
    assert splitter.counts["truncated_frames"] == 1


messages = st.binary(min_size=1, max_size=80).map(lambda b: b.replace(b"\n", b" ").strip(b" \r\x00") or b"m")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(st.tuples(messages, st.booleans()), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_any_chunking_gives_the_same_frames(items: list[tuple[bytes, bool]], cuts: list[int]) -> None:
    stream = b""
    expected = []
    for message, counted in items:
        if not counted and message[:1].isdigit():
            message = b"<6>" + message  # newline framing is defined for frames that start with PRI
        stream += octet(message) if counted else message + b"\n"
        expected.append(message)
    frames, splitter = split_all(stream, cuts)
    assert frames == expected
    # (this read "bad_frames", a key nothing counts: typed telemetry caught it)
    assert splitter.counts["oversized_frames"] == splitter.counts["truncated_frames"] == 0


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=500), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_garbage_never_raises_and_never_yields_an_oversized_frame(data: bytes, cuts: list[int]) -> None:
    frames, _ = split_all(data, cuts, max_frame=32)
    assert all(len(frame) <= 32 for frame in frames)


@pytest.mark.parametrize("shape", sorted(BUILDERS))
def test_every_documented_envelope_gives_the_kills_parse_gives(shape: str) -> None:
    text = SAMPLE.read_text()
    expected = events_from_bytes(SAMPLE.read_bytes())
    assert expected, "the sample has a kill"
    framer = EnvelopeFramer(Framer("auto", source_kind="http"), default_host="peer")
    assembler = Assembler()
    events = []
    for seq, line in enumerate(dmesg_lines(text)):
        record = framer.frame_object(BUILDERS[shape](line, seq, "node-7"), POSITION._replace(offset=seq))
        if record is not None:
            assert record.host == "node-7"
            events += assembler.feed(record)
    events += assembler.flush()
    assert [e.victim.pid for e in events if e.victim] == [e.victim.pid for e in expected if e.victim]
    assert all(not e.partial for e in events)
    if shape in KEEPS_KERNEL_TIME and shape not in ("fluentbit-systemd", "vector-journald"):
        assert [e.event_id for e in events] == [e.event_id for e in expected]
    for event in events:
        assert event.host == "node-7"


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (
            {"msg": "Out of memory: Killed process 1 (x)", "facility": "user", "programname": "kernel"},
            "not_kernel",
        ),
        (
            {"msg": "Out of memory: Killed process 1 (x)", "facility": "kern", "programname": "evil"},
            "untrusted",
        ),
        (
            {
                "MESSAGE": "Out of memory: Killed process 1",
                "_TRANSPORT": "syslog",
                "SYSLOG_IDENTIFIER": "kernel",
            },
            "untrusted",
        ),
        (
            {"message": "Out of memory: Killed process 1", "source_type": "journald", "_TRANSPORT": "stdout"},
            "not_kernel",
        ),
        ({"message": "Out of memory: Killed process 1", "systemd": {"transport": "journal"}}, "not_kernel"),
    ],
)
def test_records_not_from_the_kernel_are_counted_never_framed(obj: dict[str, object], reason: str) -> None:
    framer = EnvelopeFramer(Framer("auto", source_kind="http"))
    assert framer.frame_object(obj, POSITION) is None
    assert framer.skipped[reason] == 1
    if reason == "untrusted":
        assert framer.skipped["untrusted_oom_line"] == 1


def test_journald_user_space_write_to_kmsg_is_untrusted() -> None:
    # journald files what user space writes to /dev/kmsg under _TRANSPORT=kernel with facility 1.
    framer = EnvelopeFramer(Framer("auto", source_kind="http"))
    record = framer.frame_object(
        {
            "message": "Out of memory: fake",
            "_TRANSPORT": "kernel",
            "SYSLOG_FACILITY": "1",
            "source_type": "journald",
        },
        POSITION,
    )
    assert record is not None and not record.trusted


def test_shapes_and_bad_envelopes() -> None:
    assert envelope_shape({"foo": 1}) is None
    framer = EnvelopeFramer(Framer("auto", source_kind="http"))
    assert framer.frame_object([1, 2], POSITION) is None
    assert framer.frame_object({"foo": 1}, POSITION) is None
    assert framer.skipped["bad_envelope"] == 2


def test_iso_seconds_reads_nanoseconds_and_offsets() -> None:
    assert iso_seconds("1970-01-01T00:00:01.500000000Z") == 1.5
    assert iso_seconds("1970-01-01T01:00:01+01:00") == 1.0
    assert iso_seconds("not a time") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from(
    ["msg", "message", "MESSAGE", "facility", "FACILITY", "programname", "PROGRAM", "host", "hostname",
     "_TRANSPORT", "source_type", "systemd", "sequence", "sec", "usec", "priority", "timestamp",
     "@timestamp", "date", "sequnum", "SYSLOG_FACILITY", "log"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(obj=st.dictionaries(known_keys, json_values, max_size=8))
def test_arbitrary_envelopes_never_raise(obj: dict[str, object]) -> None:
    framer = EnvelopeFramer(Framer("auto", source_kind="http"))
    record = framer.frame_object(obj, POSITION)
    assert record is None or isinstance(record.message, str)
