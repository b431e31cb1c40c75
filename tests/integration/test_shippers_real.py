"""Real rsyslog and syslog-ng deliver kernel log lines to oomstream's syslog listener.

Each shipper follows a kernel log file (and rsyslog also /dev/kmsg through imkmsg) and forwards
to `oomstream run` listening on TCP; the events reach a real Kafka topic with the fields and the
event ids that `oomstream parse` gives for the same file.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from shippers.real import (
    free_port,
    omkafka_missing,
    rsyslog,
    rsyslog_missing,
    syslog_ng,
    syslog_ng_missing,
    wait_port,
)

from streamer.inputs import events_from_bytes
from tests.integration.kafka_broker import consume_all, unique_topic
from tests.integration.service import kafka_settings, start_oomstream

pytestmark = [pytest.mark.kafka]
SAMPLES = Path(__file__).resolve().parents[2] / "streamer" / "samples"
KERNEL_LOG = (SAMPLES / "6.18-pod-limit.dmesg").read_bytes() + (
    SAMPLES / "6.6-oom-group-kill.dmesg"
).read_bytes()


def listening_service(tmp: Path, bootstrap: str, topic: str, port: int) -> subprocess.Popen[str]:
    proc = start_oomstream(
        tmp,
        **kafka_settings(bootstrap, topic),
        OOMSTREAM_SOURCES_ENABLED="syslog",  # listen only: no local kernel log
        OOMSTREAM_SOURCES_SYSLOG_TCP_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        OOMSTREAM_SOURCES_SYSLOG_UDP_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        OOMSTREAM_KUBERNETES_MODE="off",
    )
    try:
        wait_port(port)
    except TimeoutError:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"the listener did not come up: {err[-3000:]}") from None
    return proc


def events_in(bootstrap: str, topic: str, want: int, timeout: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    events: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        try:
            events = [
                json.loads(r.value) for r in asyncio.run(consume_all(bootstrap, topic, timeout_seconds=20))
            ]
        except TimeoutError:
            events = []
        if len(events) >= want:
            return events
        time.sleep(1.0)
    return events


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return err


def check_same_as_parse(events: list[dict[str, object]], host: str) -> None:
    expected = events_from_bytes(KERNEL_LOG)
    assert sorted(e["event_id"] for e in events) == sorted(e.event_id for e in expected)  # type: ignore[type-var]
    by_id = {e.event_id: e for e in expected}
    for event in events:
        want = by_id[str(event["event_id"])]
        assert event["host"] == host
        assert event["victim"]["pid"] == want.victim.pid  # type: ignore[index, union-attr]
        assert event["cgroup"]["task_memcg"] == want.cgroup.task_memcg  # type: ignore[index, union-attr]
        assert event["kernel_time"] == want.kernel_time
        assert event["partial"] is False
        assert event["source"]["format"] == "syslog-3164" or event["source"]["format"] == "syslog-5424"  # type: ignore[index]


def test_rsyslog_follows_a_kernel_log_file_and_forwards_octet_counted_tcp(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    if (reason := rsyslog_missing()) is not None:
        pytest.skip(reason)
    topic = unique_topic("rsyslog")
    port = free_port()
    log_file = tmp_path / "kern.log"
    log_file.write_bytes(b"")
    service = listening_service(tmp_path, kafka_bootstrap, topic, port)
    try:
        config = f"""
global(localHostName="rsyslog-node-1")
module(load="imfile" PollingInterval="1")
input(type="imfile" File="{log_file}" Tag="kernel:" Facility="kern" Severity="info" ruleset="to_oomstream")
ruleset(name="to_oomstream") {{
    action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="tcp" TCP_Framing="octet-counted"
           template="RSYSLOG_ForwardFormat")
}}
"""
        with rsyslog(tmp_path, config):
            time.sleep(1.5)
            with open(log_file, "ab") as handle:  # appended while rsyslog follows the file
                handle.write(KERNEL_LOG)
            events = events_in(kafka_bootstrap, topic, want=5)
    finally:
        err = stop(service)
    check_same_as_parse(events, "rsyslog-node-1")
    assert "syslog: connection from 127.0.0.1 closed" in err


@pytest.mark.parametrize(
    ("driver", "fmt"),
    [
        ("syslog", "syslog-5424"),  # RFC 5424, RFC 6587 octet counting
        ("network", "syslog-3164"),  # RFC 3164, newline framing
    ],
)
def test_syslog_ng_forwards_a_kernel_log_file(
    tmp_path: Path, kafka_bootstrap: str, driver: str, fmt: str
) -> None:
    if (reason := syslog_ng_missing()) is not None:
        pytest.skip(reason)
    topic = unique_topic("syslogng")
    port = free_port()
    log_file = tmp_path / "kern.log"
    log_file.write_bytes(b"")
    service = listening_service(tmp_path, kafka_bootstrap, topic, port)
    try:
        config = f"""
options {{ stats-freq(0); keep-hostname(yes); }};
source s_kernel_file {{
    file("{log_file}" follow-freq(1) flags(no-parse) program-override("kernel")
         host-override("syslog-ng-node-2") default-facility(kern) default-priority(info));
}};
destination d_oomstream {{ {driver}("127.0.0.1" transport("tcp") port({port}) persist-name("oomstream")); }};
log {{ source(s_kernel_file); destination(d_oomstream); }};
"""
        with syslog_ng(tmp_path, config):
            time.sleep(1.5)
            with open(log_file, "ab") as handle:  # appended while syslog-ng follows the file
                handle.write(KERNEL_LOG)
            events = events_in(kafka_bootstrap, topic, want=5)
    finally:
        stop(service)
    check_same_as_parse(events, "syslog-ng-node-2")
    assert {e["source"]["format"] for e in events} == {fmt}  # type: ignore[index]


@pytest.mark.kernel
def test_rsyslog_imkmsg_relays_a_real_oom_kill(
    tmp_path: Path, kafka_bootstrap: str, kernel_allows_oom: None
) -> None:
    if (reason := rsyslog_missing()) is not None:
        pytest.skip(reason)
    from oomlab import cgroupfs_parts, container_id, memcg, pod_uid, run_oom

    topic = unique_topic("imkmsg")
    port = free_port()
    service = listening_service(tmp_path, kafka_bootstrap, topic, port)
    try:
        config = f"""
global(localHostName="imkmsg-node-4")
module(load="imkmsg")
action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format")
"""
        with rsyslog(tmp_path, config):
            uid, cid = pod_uid(), container_id()
            with memcg(cgroupfs_parts("burstable", uid, cid), 64 << 20) as cgroup:
                killed = run_oom(cgroup, comm="imkmsg-victim")
            assert killed
            deadline = time.monotonic() + 60
            mine: list[dict[str, object]] = []
            while time.monotonic() < deadline and not mine:
                # Other engineers' kills are in the ring buffer too: select this test's own.
                mine = [
                    e
                    for e in events_in(kafka_bootstrap, topic, want=1, timeout=10)
                    if e["victim"] and e["victim"]["pid"] in killed  # type: ignore[index]
                ]
    finally:
        err = stop(service)
    assert mine, f"the kill of {killed} did not arrive through rsyslog imkmsg: {err[-3000:]}"
    event = mine[0]
    assert event["host"] == "imkmsg-node-4"
    assert event["cgroup"]["pod_uid"] == uid  # type: ignore[index]
    assert event["victim"]["comm"] == "imkmsg-victim"  # type: ignore[index]
    assert event["partial"] is False
    assert event["source"]["format"] == "syslog-5424"  # type: ignore[index]
    assert len({e["event_id"] for e in mine}) == len(mine) == len(killed)


# -- shippers into Kafka, central mode out ---------------------------------------------------------

RSYSLOG_JSON_TEMPLATE = """
template(name="oomstream_json" type="list" option.jsonf="on") {
    property(outname="timereported" name="timereported" dateFormat="rfc3339" format="jsonf")
    property(outname="hostname" name="hostname" format="jsonf")
    property(outname="facility" name="syslogfacility-text" format="jsonf")
    property(outname="severity" name="syslogseverity-text" format="jsonf")
    property(outname="programname" name="programname" format="jsonf")
    property(outname="sequnum" name="$!sequnum" format="jsonf")
    property(outname="msg" name="msg" format="jsonf")
}
template(name="oomstream_key" type="string" string="%hostname%")
"""


def _through_central(tmp_path: Path, kafka_bootstrap: str, inputs: str, host: str, feed: object) -> None:
    from tests.integration.test_central_mode import committed_events, create_topic, member
    from tests.integration.test_central_mode import stop as stop_member

    events, group = unique_topic("central"), f"g-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka_bootstrap, inputs, 2))
    central = member(tmp_path, kafka_bootstrap, events, inputs, group, "m1")
    try:
        feed()  # type: ignore[operator]
        got = asyncio.run(committed_events(kafka_bootstrap, events, 5, timeout=90))
    finally:
        err = stop_member(central)
    assert len(got) == 5, err[-3000:]
    check_same_as_parse_central(got, host)


def check_same_as_parse_central(events: list[dict[str, object]], host: str) -> None:
    expected = events_from_bytes(KERNEL_LOG)
    assert sorted(e["event_id"] for e in events) == sorted(e.event_id for e in expected)  # type: ignore[type-var]
    assert {e["host"] for e in events} == {host}
    assert all(e["partial"] is False for e in events)


def test_rsyslog_omkafka_feeds_the_central_mode(tmp_path: Path, kafka_bootstrap: str) -> None:
    if (reason := rsyslog_missing() or omkafka_missing()) is not None:
        pytest.skip(reason)
    inputs = unique_topic("lines")
    log_file = tmp_path / "kern.log"
    log_file.write_bytes(b"")

    def feed() -> None:
        config = f"""
global(localHostName="omkafka-node-5")
module(load="imfile" PollingInterval="1")
module(load="omkafka")
{RSYSLOG_JSON_TEMPLATE}
input(type="imfile" File="{log_file}" Tag="kernel:" Facility="kern" Severity="info" ruleset="to_kafka")
ruleset(name="to_kafka") {{
    action(type="omkafka" broker=["{kafka_bootstrap}"] topic="{inputs}" template="oomstream_json"
           key="oomstream_key" dynaKey="on" confParam=["acks=all", "enable.idempotence=true"])
}}
"""
        with rsyslog(tmp_path, config):
            time.sleep(1.5)
            with open(log_file, "ab") as handle:
                handle.write(KERNEL_LOG)
            time.sleep(5.0)  # rsyslog flushes to Kafka, then stops

    _through_central(tmp_path, kafka_bootstrap, inputs, "omkafka-node-5", feed)


def test_syslog_ng_kafka_c_feeds_the_central_mode(tmp_path: Path, kafka_bootstrap: str) -> None:
    if (reason := syslog_ng_missing()) is not None:
        pytest.skip(reason)
    inputs = unique_topic("lines")
    log_file = tmp_path / "kern.log"
    log_file.write_bytes(b"")

    def feed() -> None:
        config = f"""
options {{ stats-freq(0); keep-hostname(yes); }};
source s_kernel_file {{
    file("{log_file}" follow-freq(1) flags(no-parse) program-override("kernel")
         host-override("kafka-c-node-6") default-facility(kern) default-priority(info));
}};
destination d_kafka {{
    kafka-c(bootstrap-servers("{kafka_bootstrap}") topic("{inputs}") key("$HOST")
            message("$(format-json --scope rfc5424 --key ISODATE)"));
}};
log {{ source(s_kernel_file); destination(d_kafka); }};
"""
        with syslog_ng(tmp_path, config):
            time.sleep(1.5)
            with open(log_file, "ab") as handle:
                handle.write(KERNEL_LOG)
            time.sleep(5.0)

    _through_central(tmp_path, kafka_bootstrap, inputs, "kafka-c-node-6", feed)


def test_http_listener_answers_200_once_the_events_are_in_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Vector's http sink format (NDJSON of its file source, gzip) into `oomstream run`: the 200
    comes after Kafka acknowledged the events, so they are readable as soon as it arrives."""
    import gzip
    import http.client

    import orjson
    from shippers.envelopes import BUILDERS, dmesg_lines

    topic = unique_topic("http")
    port = free_port()
    service = start_oomstream(
        tmp_path,
        **kafka_settings(kafka_bootstrap, topic),
        OOMSTREAM_SOURCES_ENABLED="http",
        OOMSTREAM_SOURCES_HTTP_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        OOMSTREAM_KUBERNETES_MODE="off",
    )
    try:
        wait_port(port)
        lines = dmesg_lines(KERNEL_LOG.decode())
        body = b"".join(
            orjson.dumps(BUILDERS["vector-file"](line, n, "vector-node-7")) + b"\n"
            for n, line in enumerate(lines)
        )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/lines", gzip.compress(body), {"Content-Encoding": "gzip"})
        response = conn.getresponse()
        answer = orjson.loads(response.read())
        assert response.status == 200, answer
        # No waiting: the events are in Kafka when the 200 arrives.
        events = [
            json.loads(r.value) for r in asyncio.run(consume_all(kafka_bootstrap, topic, timeout_seconds=30))
        ]
    finally:
        stop(service)
    check_same_as_parse_central(events, "vector-node-7")
