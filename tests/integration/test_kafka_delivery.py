"""Delivery to a REAL broker: every field, key and header read back by a consumer group."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from parsers.events import event_to_dict
from streamer.commands import publish, tail
from streamer.kafka import KafkaOptions
from streamer.sinks import DeadLetter, DeliveryStatus, DeliveryTally
from streamer.sinks.kafka import KafkaSink, select_key
from tests.integration.kafka_broker import consume_all, make_events, oom_log, unique_topic

pytestmark = pytest.mark.kafka

KEY_CHAIN = ("pod_uid", "container_id", "host")


def config_for(bootstrap: str, name: str, **overrides: object) -> KafkaOptions:
    settings: dict[str, object] = {
        "events_topic": unique_topic(name),
        "dead_letter_topic": unique_topic(name + ".dl"),
        "producer_host": "it-producer",
    }
    settings.update(overrides)
    return KafkaOptions(tuple(bootstrap.split(",")), **settings)  # type: ignore[arg-type]


async def test_events_round_trip_with_keys_headers_order_and_dead_letters(kafka_bootstrap: str) -> None:
    events = make_events(3000, pods=40, partial_every=25)
    config = config_for(kafka_bootstrap, "roundtrip", topic_partitions=6)
    tally = DeliveryTally(keep_results=True)
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for n, event in enumerate(events):
            await sink.submit(event, [("file", n)])
        await sink.submit_dead_letter(
            DeadLetter("unparseable_input", ("<4>[1.0] garbage", "more garbage"), host="node-it"), ["garbage"]
        )
    partial = [e for e in events if e.partial]
    assert partial and tally.failed == 0
    assert (tally.sent, tally.dead_lettered, tally.dead_letter_copies) == (len(events), 1, len(partial))

    records = await consume_all(kafka_bootstrap, config.events_topic)
    assert len(records) == len(events)
    by_id = {orjson.loads(r.value)["event_id"]: r for r in records}
    assert set(by_id) == {e.event_id for e in events}
    results = {r.event_id: r for r in tally.results}
    for n, event in enumerate(events):
        record = by_id[event.event_id]
        assert orjson.loads(record.value) == event_to_dict(event)  # every field, as serialized
        assert record.key == select_key(event, KEY_CHAIN)
        assert dict(record.headers) == {
            "schema_version": b"1",
            "event_type": b"oom_kill",
            "content_type": b"application/json",
            "producer_host": b"it-producer",
            "event_id": event.event_id.encode(),
        }
        result = results[event.event_id]
        assert result.positions == (("file", n),) and result.status is DeliveryStatus.ACKED
        assert (result.topic, result.partition, result.offset) == (
            config.events_topic,
            record.partition,
            record.offset,
        )
    # One key, one partition, in submit order: a pod's events stay ordered.
    partitions: dict[bytes | None, set[int]] = defaultdict(set)
    offsets: dict[bytes | None, list[int]] = defaultdict(list)
    for event in events:
        record = by_id[event.event_id]
        partitions[record.key].add(record.partition)
        offsets[record.key].append(record.offset)
    assert all(len(p) == 1 for p in partitions.values())
    assert all(o == sorted(o) for o in offsets.values())
    assert len(partitions) >= 40  # pod uids, plus the host key of partial reports without one

    letters = await consume_all(kafka_bootstrap, config.dead_letter_topic)
    envelopes = [orjson.loads(r.value) for r in letters]
    partial_letters = {e["event_id"]: e for e in envelopes if e["reason"] == "partial_report"}
    assert set(partial_letters) == {e.event_id for e in partial}
    for event in partial:
        envelope = partial_letters[event.event_id]
        assert envelope["type"] == "dead_letter" and envelope["raw_lines"] == event.raw_lines
        assert envelope["event"] == event_to_dict(event) and envelope["host"] == "node-it"
    garbage = [e for e in envelopes if e["reason"] == "unparseable_input"]
    assert len(garbage) == 1 and garbage[0]["raw_lines"] == ["<4>[1.0] garbage", "more garbage"]
    headers = {dict(r.headers)["event_type"] for r in letters}
    assert headers == {b"dead_letter"}


async def test_oversized_event_goes_to_dead_letter_and_the_rest_is_delivered(kafka_bootstrap: str) -> None:
    events = make_events(50)
    huge = dataclasses.replace(events[10], raw_lines=[f"line {i} " + "x" * 200 for i in range(200)])
    events[10] = huge
    config = config_for(kafka_bootstrap, "toolarge", max_request_size_bytes=30_000)
    tally = DeliveryTally(keep_results=True)
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for event in events:
            await sink.submit(event)
    assert (tally.sent, tally.dead_lettered, tally.failed) == (49, 1, 0)
    refused = next(r for r in tally.results if r.status is DeliveryStatus.DEAD_LETTERED)
    assert refused.event_id == huge.event_id and refused.reason == "message_too_large"
    assert refused.acknowledged  # recorded in the dead-letter topic: the pipeline may move on
    records = await consume_all(kafka_bootstrap, config.events_topic)
    assert {orjson.loads(r.value)["event_id"] for r in records} == {e.event_id for e in events} - {
        huge.event_id
    }
    [letter] = await consume_all(kafka_bootstrap, config.dead_letter_topic)
    envelope = orjson.loads(letter.value)
    assert envelope["reason"] == "message_too_large" and envelope["event_id"] == huge.event_id
    assert huge.raw_lines is not None and envelope["raw_lines_truncated"]
    assert envelope["raw_lines"] == huge.raw_lines[: len(envelope["raw_lines"])]
    assert dict(letter.headers)["dead_letter_reason"] == b"message_too_large"


@pytest.mark.parametrize("compression", ["gzip", "lz4", "snappy", "none"])
async def test_other_compressions_deliver(kafka_bootstrap: str, compression: str) -> None:
    events = make_events(200)
    config = config_for(kafka_bootstrap, f"codec-{compression}", compression=compression)
    tally = DeliveryTally()
    async with KafkaSink(config, on_delivery=tally, registry=CollectorRegistry()) as sink:
        for event in events:
            await sink.submit(event)
    assert tally.sent == 200
    records = await consume_all(kafka_bootstrap, config.events_topic)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sorted(e.event_id for e in events)


def _command(module: object, argv: list[str]) -> tuple[str, str]:
    """Run one `oomstream` subcommand in process; it must exit 0. Returns (stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="oomstream")
    sub = parser.add_subparsers(dest="command", required=True)
    module.add_parser(sub)  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    assert args.handler(args, out, err) == 0, err.getvalue()
    return out.getvalue(), err.getvalue()


def test_publish_and_tail_commands(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes(oom_log(120, pods=7, partial_every=40))
    topic, dead = unique_topic("cli"), unique_topic("cli.dl")
    monkeypatch.setenv("OOMSTREAM_KAFKA_BOOTSTRAP", kafka_bootstrap)  # bootstrap from the environment
    _, summary = _command(
        publish,
        [
            "publish",
            str(log),
            "--topic",
            topic,
            "--sinks-kafka-dead-letter-topic",
            dead,
            "--host",
            "node-cli",
            "--no-progress",
        ],
    )
    assert "120 events" in summary and "120 sent (3 partial, also dead-lettered)" in summary, summary
    assert "0 dead-lettered instead, 0 failed" in summary

    records = asyncio.run(consume_all(kafka_bootstrap, topic))
    assert len(records) == 120
    assert all(orjson.loads(r.value)["host"] == "node-cli" for r in records)

    out, _ = _command(
        tail,
        [
            "tail",
            "--topic",
            topic,
            "--from-beginning",
            "--json",
            "--max-events",
            "120",
            "--timeout-seconds",
            "20",
        ],
    )
    lines = out.splitlines()
    assert sorted(orjson.loads(x)["event_id"] for x in lines) == sorted(
        orjson.loads(r.value)["event_id"] for r in records
    )

    group = unique_topic("group")
    pretty_argv = [
        "tail",
        "--topic",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--pretty",
        "--timeout-seconds",
        "5",
    ]
    out, _ = _command(tail, pretty_argv)
    pretty = out.splitlines()
    assert len(pretty) == 120
    complete = next(line for line in pretty if "[partial" not in line)
    assert "node-cli pod 1f2e3d4c-5b6a-7980-a1b2-" in complete and "killed worker(" in complete
    assert "anon-rss=" in complete and "scope=container memcg=256.0MiB/256.0MiB" in complete
    # The group committed its offsets: a second run of the same group has nothing new.
    out, _ = _command(tail, pretty_argv)
    assert out == ""
