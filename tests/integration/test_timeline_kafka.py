"""oomstream timeline against the real broker: a time range read by offsets, and the live page.

The range test publishes records with explicit timestamps before, inside and after the range and
checks that only the range's records were fetched (the topic is never read whole) and that no
consumer group appeared. The live test opens the page in headless Chromium, publishes a kill to
the broker and measures how long the page takes to show it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from browser import browser, console_errors, requested_urls, screenshot
from timeline_fixtures import kill_event, synthetic_events

from streamer.cli import main

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]
PORTS = range(51200, 51300)  # this suite's share of the project's test port range


async def _publish(bootstrap: str, topic: str, items: list[tuple[dict[str, Any], int | None]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps(event), timestamp_ms=stamp) for event, stamp in items
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _groups(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {group[0] for group in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def test_range_is_read_by_time_not_the_whole_topic(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"i13-timeline-range-{uuid.uuid4().hex[:8]}"
    now = time.time()
    old = [
        (e, int((now - 3 * 3600) * 1000)) for e in synthetic_events(200, start=now - 3 * 3600 - 300, seed=3)
    ]
    inside = [(e, int((now - 1800) * 1000)) for e in synthetic_events(30, start=now - 1900, seed=4)]
    # The same 30 events published again (a replayed spool): shown once.
    inside += [(e, int((now - 1700) * 1000)) for e, _ in inside]
    groups_before = asyncio.run(_groups(kafka_bootstrap))
    asyncio.run(_publish(kafka_bootstrap, topic, old + inside))

    argv = ["timeline", "--bootstrap", kafka_bootstrap, "--topic", topic, "--since", "1h", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    document = orjson.loads(out)
    source = document["summary"]["source"]
    # Only the 60 records published inside the range were fetched, not the 200 older ones.
    assert f"Kafka {kafka_bootstrap} topic {topic}: 60 records" in source, source
    assert "30 duplicate(s) shown once" in source
    expected_kills = sum(1 for e, _ in inside[:30] if e["type"] == "oom_kill")
    assert document["summary"]["kills"] == expected_kills
    assert "reading" in err and kafka_bootstrap in err
    # Nothing committed: no consumer group was created.
    assert asyncio.run(_groups(kafka_bootstrap)) - groups_before == set()

    # --from/--to on the old part: the old records only, and --group commits when asked.
    group = f"i13-timeline-{uuid.uuid4().hex[:6]}"
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3 * 3600 - 600))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 2 * 3600))
    argv = [
        "timeline",
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        topic,
        "--from",
        start,
        "--to",
        end,
        "--json",
        "--max-publish-delay",
        "1m",
        "--group",
        group,
    ]
    assert main(argv) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert ": 200 records" in document["summary"]["source"]
    assert group in asyncio.run(_groups(kafka_bootstrap))


def test_missing_topic_is_a_clear_error(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["timeline", "--bootstrap", kafka_bootstrap, "--topic", f"i13-none-{uuid.uuid4().hex[:8]}"]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _start_server(kafka_bootstrap: str, topic: str, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "timeline",
            "--serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--bootstrap",
            kafka_bootstrap,
            "--topic",
            topic,
            "--since",
            "1h",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving http://" not in line:
        process.kill()
        raise AssertionError(
            f"server did not start: {line!r} {process.stderr.read() if process.stderr else ''}"
        )
    return process


def test_live_page_shows_a_new_kill_within_a_second(kafka_bootstrap: str) -> None:
    topic = f"i13-timeline-live-{uuid.uuid4().hex[:8]}"
    now = time.time()
    first = kill_event(
        at=now - 60,
        host="node-a",
        namespace="payments",
        workload=("Deployment", "web"),
        pod="web-1",
        container="web",
        limit_fired="container_limit",
        rss_mib=500,
        limit_mib=512,
        pid=101,
        comm="java",
        incident_id="live-1",
    )
    asyncio.run(_publish(kafka_bootstrap, topic, [(first, None)]))
    process = None
    for _ in range(3):  # a port can be taken between the probe and the bind: try another
        port = _free_port()
        try:
            process = _start_server(kafka_bootstrap, topic, port)
            break
        except AssertionError:
            continue
    assert process is not None, "the live server did not start"
    try:
        origin = f"http://127.0.0.1:{port}"
        with browser() as driver:
            driver.get(f"{origin}/?namespace=payments")
            deadline = time.monotonic() + 10
            while driver.find_element("id", "count-kills").text != "1" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert driver.find_element("id", "count-kills").text == "1"
            assert "live" in driver.find_element("id", "live-status").text
            second = kill_event(
                at=time.time(),
                host="node-b",
                namespace="payments",
                workload=("Deployment", "web"),
                pod="web-2",
                container="web",
                limit_fired="pod_limit",
                rss_mib=900,
                limit_mib=1024,
                pid=202,
                comm="java",
                incident_id="live-2",
            )
            asyncio.run(_publish(kafka_bootstrap, topic, [(second, None)]))
            acknowledged = time.monotonic()
            while (
                driver.find_element("id", "count-kills").text != "2" and time.monotonic() - acknowledged < 5
            ):
                time.sleep(0.01)
            elapsed = time.monotonic() - acknowledged
            assert driver.find_element("id", "count-kills").text == "2"
            assert elapsed < 1.0, f"the page showed the new kill {elapsed:.2f}s after Kafka acknowledged it"
            assert driver.find_element("id", "shown-incidents").text == "2"
            assert "namespace=payments" in driver.current_url
            # The second kill is the workload's second: the page marks the repeat.
            assert "(2/2)" in driver.find_element("css selector", '#incidents tr.row[data-key="live-2"]').text
            screenshot(driver, "timeline-live.png")
            assert console_errors(driver) == []
            outside = [u for u in requested_urls(driver) if not u.startswith((origin, "data:"))]
            assert outside == []
    finally:
        process.terminate()
        process.wait(10)


def test_tail_and_timeline_find_the_local_broker_without_flags(kafka_bootstrap: str, tmp_path: Path) -> None:
    # What `make run` leaves for them: .state/kafka-bootstrap in the directory it runs from.
    topic = f"i13-discovery-{uuid.uuid4().hex[:8]}"
    event = kill_event(at=time.time() - 5, host="node-a", namespace="payments", workload=("Deployment", "web"), pod="web-1", container="web", limit_fired="container_limit", rss_mib=500, limit_mib=512, pid=7, comm="java", incident_id="disc-1")
    asyncio.run(_publish(kafka_bootstrap, topic, [(event, None)]))
    (tmp_path / ".state").mkdir()
    (tmp_path / ".state" / "kafka-bootstrap").write_text(kafka_bootstrap + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OOMSTREAM_")}
    env["PYTHONPATH"] = str(REPO)
    base = [sys.executable, "-m", "streamer.cli"]
    tail = subprocess.run(
        [*base, "tail", "--topic", topic, "--from-beginning", "--json", "--max-events", "1", "--timeout-seconds", "20"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert tail.returncode == 0, tail.stderr
    assert orjson.loads(tail.stdout)["event_id"] == event["event_id"]
    assert f"from Kafka at {kafka_bootstrap}" in tail.stderr and "the local broker `make run` started" in tail.stderr
    assert tail.stderr.count("oomstream tail: reading ") == 1, tail.stderr  # once, naming where it came from
    timeline = subprocess.run(
        [*base, "timeline", "--topic", topic, "--since", "10m", "--width", "80"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert timeline.returncode == 0, timeline.stderr
    assert "the local broker `make run` started" in timeline.stderr
    assert timeline.stdout.startswith("OOM timeline  1 kill(s) in 1 incident(s)")
    # Without the marker (and no flag, variable or config file) the error says how to get a broker;
    # not checkable while a `make run` of this checkout has left its own marker.
    (tmp_path / ".state" / "kafka-bootstrap").unlink()
    from streamer.commands.bootstrap import local_broker_files

    if any(path.exists() for path in local_broker_files(tmp_path)):
        return
    missing = subprocess.run(
        [*base, "tail", "--topic", topic, "--timeout-seconds", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2
    assert "no Kafka bootstrap servers" in missing.stderr and "make run" in missing.stderr
