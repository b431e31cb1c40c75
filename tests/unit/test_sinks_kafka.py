"""Kafka sink: configuration, error classification, keys/headers, and the sink's own bookkeeping.

Delivery to Kafka is NOT claimed here: the scripted producer below only drives the sink's retry,
dead-letter and in-flight logic through outcomes that are hard to provoke on a real broker.
Real delivery is tested in tests/integration/test_kafka_*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import errors as kerr
from aiokafka.structs import RecordMetadata, TopicPartition
from prometheus_client import CollectorRegistry

from parsers.events import event_to_dict
from streamer.kafka import KafkaOptions, Secret, classify_kafka_error, connection_kwargs
from streamer.sinks import DeadLetter, DeliveryStatus, DeliveryTally, SinkConfigError, dead_letter_to_json
from streamer.sinks.kafka import KafkaSink, event_headers, select_key
from tests.unit.test_sinks_jsonl import make_events

BOOT = ("127.0.0.1:9092",)


# -- configuration ------------------------------------------------------------------------------------


def test_defaults_are_safe() -> None:
    config = KafkaOptions(BOOT)
    assert (config.events_topic, config.dead_letter_topic) == (
        "oomstream.events.v1",
        "oomstream.deadletter.v1",
    )
    assert config.compression == "zstd" and config.key_fields == ("pod_uid", "container_id", "host")
    assert config.partial_events == "both" and config.topic_policy == "create"


def test_from_mapping_types_and_lists() -> None:
    config = KafkaOptions.from_mapping(
        {
            "bootstrap_servers": "a:9092, b:9093",
            "linger_ms": 10,
            "request_timeout_seconds": 5,
            "key_fields": ["host"],
            "ssl_check_hostname": False,
            "security_protocol": "SSL",
        },
        "oomstream.toml [sinks.kafka]",
    )
    assert config.bootstrap_servers == ("a:9092", "b:9093")
    assert config.request_timeout_seconds == 5.0 and isinstance(config.request_timeout_seconds, float)
    assert config.key_fields == ("host",) and config.origin == "oomstream.toml [sinks.kafka]"


@pytest.mark.parametrize(
    ("mapping", "pattern"),
    [
        (
            {"bootstrap_servers": "a:1", "linger": 5},
            r"unknown key 'linger' in SRC \(did you mean 'linger_ms'\?\)",
        ),
        ({"bootstrap_servers": "a:1", "origin": "x"}, r"unknown key 'origin' in SRC"),
        (
            {"bootstrap_servers": "a:1", "sasl_password": "hunter2"},
            r"sasl_password: secrets are not accepted",
        ),
        (
            {"bootstrap_servers": "a:1", "linger_ms": "5"},
            r"linger_ms: expected an integer, got '5' \(in SRC\)",
        ),
        ({"bootstrap_servers": "a:1", "linger_ms": True}, r"linger_ms: expected an integer"),
        ({"bootstrap_servers": "a:1", "compression": "brotli"}, r"compression: expected one of 'zstd'"),
        ({"linger_ms": 5}, r"bootstrap_servers: required \(in SRC\)"),
        ({"bootstrap_servers": "nohost"}, r"bootstrap_servers: 'nohost' is not host:port \(in SRC\)"),
        ({"bootstrap_servers": "a:1", "max_in_flight": 0}, r"max_in_flight: must be > 0"),
        (
            {"bootstrap_servers": "a:1", "events_topic": "bad topic"},
            r"events_topic: 'bad topic' is not a valid",
        ),
        ({"bootstrap_servers": "a:1", "key_fields": ["pod"]}, r"key_fields: unknown field 'pod'"),
        (
            {"bootstrap_servers": "a:1", "security_protocol": "SASL_SSL"},
            r"sasl_username: required with security_protocol = 'SASL_SSL' \(in SRC\)",
        ),
        (
            {"bootstrap_servers": "a:1", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
            r"sasl_password_file: .* needs sasl_password_file, sasl_password_env",
        ),
        ({"bootstrap_servers": "a:1", "ssl_cafile": "/ca.pem"}, r"ssl_cafile: is set but security_protocol"),
    ],
)
def test_from_mapping_rejects_with_key_and_source(mapping: dict[str, Any], pattern: str) -> None:
    with pytest.raises(SinkConfigError, match=pattern) as info:
        KafkaOptions.from_mapping(mapping, "SRC")
    assert info.value.setting is not None


def test_from_strings_coerces_by_field_type() -> None:
    config = KafkaOptions.from_strings(
        ["linger_ms=20", "compression=none", "ssl_check_hostname=false", "key-fields=host,event_id"],
        "-o options",
        base={"bootstrap_servers": "h:1", "security_protocol": "SSL"},
    )
    assert config.linger_ms == 20 and config.compression == "none"
    assert config.ssl_check_hostname is False and config.key_fields == ("host", "event_id")
    with pytest.raises(SinkConfigError, match="expected KEY=VALUE"):
        KafkaOptions.from_strings(["linger_ms"], "-o", base={"bootstrap_servers": "h:1"})
    with pytest.raises(SinkConfigError, match=r"unknown key 'lingr_ms' in -o \(did you mean 'linger_ms'\?\)"):
        KafkaOptions.from_strings(["lingr_ms=1"], "-o", base={"bootstrap_servers": "h:1"})


def test_secrets_come_from_file_or_env_and_never_show(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret\n")
    config = KafkaOptions.from_mapping(
        {
            "bootstrap_servers": "h:1",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "svc",
            "sasl_password_file": str(secret_file),
        },
        "test",
    )
    kwargs = connection_kwargs(config)
    assert kwargs["sasl_plain_password"] == "s3cret" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "s3cret" not in repr(config)
    assert repr(Secret("s3cret")) == "Secret('****')" and "s3cret" not in str(Secret("s3cret"))

    env_config = KafkaOptions.from_mapping(
        {
            "bootstrap_servers": "h:1",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_username": "svc",
            "sasl_password_env": "KAFKA_PW",
        },
        "test",
    )
    assert connection_kwargs(env_config, {"KAFKA_PW": "fromenv"})["sasl_plain_password"] == "fromenv"
    with pytest.raises(
        SinkConfigError, match=r"sasl_password_env = 'KAFKA_PW': environment variable is unset"
    ):
        connection_kwargs(env_config, {})
    missing = KafkaOptions.from_mapping(
        {
            "bootstrap_servers": "h:1",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_username": "svc",
            "sasl_password_file": str(tmp_path / "nope"),
        },
        "test",
    )
    with pytest.raises(SinkConfigError, match=r"sasl_password_file = .*nope.*: cannot read"):
        connection_kwargs(missing)


def test_tls_options_build_a_context_or_name_the_file(tmp_path: Path) -> None:
    config = KafkaOptions(BOOT, security_protocol="SSL", ssl_cafile=str(tmp_path / "ca.pem"))
    with pytest.raises(SinkConfigError, match="ssl_cafile"):
        connection_kwargs(config)
    plain = connection_kwargs(KafkaOptions(BOOT, security_protocol="SSL", ssl_check_hostname=False))
    assert plain["ssl_context"].check_hostname is False


# -- classification, keys, headers, envelopes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retriable", "reason"),
    [
        (kerr.NotLeaderForPartitionError(), True, "not_leader_for_partition"),
        (kerr.RequestTimedOutError(), True, "request_timed_out"),
        (kerr.KafkaConnectionError("x"), True, "connection_error"),
        (kerr.KafkaTimeoutError(), True, "timeout"),
        (kerr.NotEnoughReplicasError(), True, "not_enough_replicas"),
        (kerr.LeaderNotAvailableError(), True, "leader_not_available"),
        (kerr.MessageSizeTooLargeError(), False, "message_too_large"),
        (kerr.RecordTooLargeError(), False, "message_too_large"),
        (kerr.TopicAuthorizationFailedError(), False, "authorization_failed"),
        (kerr.ClusterAuthorizationFailedError(), False, "authorization_failed"),
        (kerr.SaslAuthenticationFailed(), False, "authentication_failed"),
        (kerr.InvalidTopicError(), False, "invalid_topic"),
        (kerr.CorruptRecordException(), False, "rejected_by_broker"),
        (ValueError("bug"), False, "internal_error"),
    ],
)
def test_classification(error: BaseException, retriable: bool, reason: str) -> None:
    klass = classify_kafka_error(error)
    assert (klass.retriable, klass.reason) == (retriable, reason)


def test_unknown_topic_depends_on_topic_creation_and_sequence_errors_reset() -> None:
    assert classify_kafka_error(kerr.UnknownTopicOrPartitionError(), topic_creation=True).retriable
    assert not classify_kafka_error(kerr.UnknownTopicOrPartitionError(), topic_creation=False).retriable
    assert classify_kafka_error(kerr.OutOfOrderSequenceNumber()).reset_producer


def test_key_chain_keeps_a_pod_on_one_key() -> None:
    event = make_events(1)[0]
    assert select_key(event, ("pod_uid", "container_id", "host")) == event.cgroup.pod_uid.encode()  # type: ignore[union-attr]
    assert select_key(event, ("host",)) == b"node-a"
    partial = make_events(2, partial_every=2)[1]  # no summary line: no pod uid, no container id
    assert partial.cgroup.pod_uid is None
    assert select_key(partial, ("pod_uid", "container_id", "host")) == b"node-a"


def test_headers() -> None:
    assert dict(event_headers("id-1", b"me")) == {
        "schema_version": b"1",
        "event_type": b"oom_kill",
        "content_type": b"application/json",
        "producer_host": b"me",
        "event_id": b"id-1",
    }
    headers = dict(event_headers(None, b"me", dead_letter_reason="partial_report"))
    assert headers["event_type"] == b"dead_letter" and headers["dead_letter_reason"] == b"partial_report"


def test_dead_letter_envelope_is_bounded() -> None:
    event = make_events(2, partial_every=2)[1]
    letter = DeadLetter.from_event(event, "message_too_large", "too big")
    full = orjson.loads(dead_letter_to_json(letter))
    assert full["event"] == event_to_dict(event) and full["raw_lines"] == event.raw_lines
    big = DeadLetter("unparseable_input", tuple("x" * 1000 for _ in range(50)))
    cut = dead_letter_to_json(big, max_bytes=10_000)
    assert len(cut) <= 10_000
    envelope = orjson.loads(cut)
    assert envelope["raw_lines_truncated"] and envelope["raw_lines_total"] == 50
    one_line = dead_letter_to_json(DeadLetter("x", ("y" * 50_000,)), max_bytes=5000)
    assert len(one_line) <= 5000


# -- sink bookkeeping with a scripted producer (no delivery claimed) -----------------------------------

Outcome = BaseException | None


class ScriptedBuilder:
    """Stands in for aiokafka's BatchBuilder: a list with a record limit."""

    def __init__(self, limit: int) -> None:
        self.items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.limit = limit
        self.is_closed = False

    def append(
        self, *, timestamp: float | None, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> object | None:
        if self.is_closed or len(self.items) >= self.limit:
            return None
        self.items.append((key, value, headers))
        return object()

    def close(self) -> None:
        self.is_closed = True


class ScriptedProducer:
    """Resolves each batch per ``script(topic, value, attempt)`` of its records: None = success.

    A batch fails as a whole with the first error any of its records is scripted to get, as a
    broker refusing a produce request for a partition would.
    """

    def __init__(
        self,
        kwargs: dict[str, Any],
        script: Callable[[str, bytes, int], Outcome],
        raise_on_send: bool,
        attempts: dict[bytes, int],
    ) -> None:
        self.kwargs = kwargs
        self.script = script
        self.raise_on_send = raise_on_send
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.batches: list[int] = []  # record count of each batch handed over
        self.attempts = attempts  # shared by the producers of one sink: attempts count per record
        self.stopped = False
        self.hold: asyncio.Event | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> ScriptedBuilder:
        return ScriptedBuilder(limit=50)

    async def send_batch(
        self, builder: ScriptedBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        outcome: Outcome = None
        for _, value, _ in builder.items:
            attempt = self.attempts[value] = self.attempts.get(value, 0) + 1
            outcome = outcome or self.script(topic, value, attempt)
        if outcome is not None and self.raise_on_send:
            raise outcome
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches.append(len(builder.items))
        base = len(self.sent)
        self.sent.extend((topic, key, value, headers) for key, value, headers in builder.items)

        async def resolve() -> None:
            if self.hold is not None:
                await self.hold.wait()
            if outcome is None:
                future.set_result(
                    RecordMetadata(topic, partition, TopicPartition(topic, partition), base, -1, -1, 0)
                )
            else:
                future.set_exception(outcome)

        asyncio.get_running_loop().create_task(resolve())
        return future


def scripted_sink(
    script: Callable[[str, bytes, int], Outcome],
    *,
    raise_on_send: bool = False,
    **overrides: Any,
) -> tuple[KafkaSink, DeliveryTally, list[ScriptedProducer]]:
    producers: list[ScriptedProducer] = []
    attempts: dict[bytes, int] = {}

    def factory(kwargs: dict[str, Any]) -> ScriptedProducer:
        producer = ScriptedProducer(kwargs, script, raise_on_send, attempts)
        producers.append(producer)
        return producer

    settings: dict[str, Any] = {
        "retry_initial_backoff_seconds": 0.01,
        "retry_max_backoff_seconds": 0.02,
        "close_timeout_seconds": 2.0,
    }
    settings.update(overrides)
    config = KafkaOptions(BOOT, **settings)
    tally = DeliveryTally(keep_results=True)
    sink = KafkaSink(config, on_delivery=tally, registry=CollectorRegistry(), producer_factory=factory)
    return sink, tally, producers


async def test_producer_settings_are_idempotent_acks_all() -> None:
    sink, _, producers = scripted_sink(
        lambda *_: None, linger_ms=7, batch_size_bytes=1000, compression="gzip"
    )
    async with sink:
        pass
    kwargs = producers[0].kwargs
    assert kwargs["acks"] == "all" and kwargs["enable_idempotence"] is True
    assert (kwargs["linger_ms"], kwargs["max_batch_size"], kwargs["compression_type"]) == (7, 1000, "gzip")
    assert producers[0].stopped


async def test_retriable_errors_are_resent_then_acknowledged() -> None:
    def script(topic: str, value: bytes, attempt: int) -> Outcome:
        return kerr.NotLeaderForPartitionError() if attempt <= 2 else None

    sink, tally, _ = scripted_sink(script)
    events = make_events(3)
    async with sink:
        for n, event in enumerate(events):
            await sink.submit(event, [n])
    assert tally.sent == 3 and tally.failed == 0
    assert sorted(r.positions for r in tally.results) == [(0,), (1,), (2,)]
    assert all(r.topic == "oomstream.events.v1" and r.offset is not None for r in tally.results)
    registry = sink.metrics.retries.labels("kafka", "not_leader_for_partition")
    assert registry._value.get() == 6  # two resends per event


async def test_retries_are_bounded_and_end_failed() -> None:
    sink, tally, _ = scripted_sink(lambda *_: kerr.KafkaConnectionError("down"), retry_max_attempts=3)
    async with sink:
        await sink.submit(make_events(1)[0], ["p"])
    assert tally.failed == 1
    failure = tally.failures[0]
    assert failure.reason == "connection_error" and failure.positions == ("p",) and not failure.acknowledged


async def test_fatal_errors_go_to_dead_letter_and_pipeline_continues() -> None:
    events = make_events(3)
    too_big = events[1].event_id

    def script(topic: str, value: bytes, attempt: int) -> Outcome:
        refused: BaseException = kerr.MessageSizeTooLargeError()
        return refused if topic == "oomstream.events.v1" and too_big.encode() in value else None

    for raise_on_send in (False, True):  # refused by the broker, or by the client before sending
        sink, tally, producers = scripted_sink(script, raise_on_send=raise_on_send)
        async with sink:
            for event in events:
                await sink.submit(event)
        assert (tally.sent, tally.dead_lettered, tally.failed) == (2, 1, 0)
        refused = next(r for r in tally.results if r.status is DeliveryStatus.DEAD_LETTERED)
        assert refused.reason == "message_too_large" and refused.topic == "oomstream.deadletter.v1"
        dead = [s for s in producers[0].sent if s[0] == "oomstream.deadletter.v1"]
        assert len(dead) == 1
        envelope = orjson.loads(dead[0][2])
        assert envelope["reason"] == "message_too_large" and envelope["event_id"] == too_big
        assert dict(dead[0][3])["dead_letter_reason"] == b"message_too_large"


async def test_partial_events_go_to_both_topics_by_default() -> None:
    sink, tally, producers = scripted_sink(lambda *_: None)
    events = make_events(2, partial_every=2)
    async with sink:
        for event in events:
            await sink.submit(event)
    topics = [s[0] for s in producers[0].sent]
    assert topics.count("oomstream.events.v1") == 2 and topics.count("oomstream.deadletter.v1") == 1
    assert tally.sent == 2 and tally.dead_letter_copies == 1

    only, tally2, producers2 = scripted_sink(lambda *_: None, partial_events="dead_letter_only")
    async with only:
        for event in events:
            await only.submit(event)
    assert [s[0] for s in producers2[0].sent] == ["oomstream.events.v1", "oomstream.deadletter.v1"]
    assert (tally2.sent, tally2.dead_lettered) == (1, 1)


async def test_partial_event_is_not_acknowledged_until_its_dead_letter_is() -> None:
    def script(topic: str, value: bytes, attempt: int) -> Outcome:
        return kerr.TopicAuthorizationFailedError() if topic == "oomstream.deadletter.v1" else None

    sink, tally, _ = scripted_sink(script)
    async with sink:
        await sink.submit(make_events(2, partial_every=2)[1], ["p"])
    assert tally.failed == 1 and tally.failures[0].reason == "authorization_failed"


async def test_in_flight_is_bounded() -> None:
    sink, tally, producers = scripted_sink(lambda *_: None, max_in_flight=2)
    await sink.start()
    producers[0].hold = asyncio.Event()
    events = make_events(3)
    await sink.submit(events[0])
    await sink.submit(events[1])
    third = asyncio.create_task(sink.submit(events[2]))
    await asyncio.sleep(0.05)
    assert not third.done() and sink.in_flight == 2
    producers[0].hold.set()
    await asyncio.wait_for(third, 2)
    await sink.close()
    assert tally.sent == 3


async def test_sequence_errors_replace_the_producer() -> None:
    def script(topic: str, value: bytes, attempt: int) -> Outcome:
        return kerr.OutOfOrderSequenceNumber() if attempt == 1 else None

    sink, tally, producers = scripted_sink(script)
    async with sink:
        await sink.submit(make_events(1)[0])
    assert tally.sent == 1 and len(producers) == 2 and producers[0].stopped


async def test_close_reports_what_is_still_open_as_failed() -> None:
    sink, tally, producers = scripted_sink(lambda *_: None, close_timeout_seconds=0.2)
    await sink.start()
    producers[0].hold = asyncio.Event()  # the broker never answers
    await sink.submit(make_events(1)[0], ["p"])
    await sink.close()
    assert tally.failed == 1 and tally.failures[0].reason == "closed"


async def test_compression_library_is_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import codec

    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    sink, _, _ = scripted_sink(lambda *_: None)
    with pytest.raises(SinkConfigError, match=r"compression: 'zstd' needs the Python package 'cramjam'"):
        await sink.start()


async def test_records_are_batched_per_partition() -> None:
    sink, tally, producers = scripted_sink(lambda *_: None)
    async with sink:
        for event in make_events(120):
            await sink.submit(event)
    assert tally.sent == 120
    assert len(producers[0].batches) < 20 and max(producers[0].batches) <= 50
    keys_by_topic_partition = {(r.topic, r.partition) for r in tally.results}
    assert len(keys_by_topic_partition) > 1


async def test_records_over_max_request_size_are_refused_before_sending() -> None:
    sink, tally, producers = scripted_sink(lambda *_: None, max_request_size_bytes=2000)
    events = make_events(2)
    async with sink:
        for event in events:
            await sink.submit(event)
    assert (tally.sent, tally.dead_lettered) == (0, 2)
    assert {r.reason for r in tally.results} == {"message_too_large"}
    assert all(topic == "oomstream.deadletter.v1" for topic, *_ in producers[0].sent)
    assert all(len(value) <= 2000 for _, _, value, _ in producers[0].sent)


async def test_metrics_count_sent_retries_dead_letters_latency_and_in_flight() -> None:
    def script(topic: str, value: bytes, attempt: int) -> Outcome:
        timed_out: BaseException = kerr.RequestTimedOutError()
        partial = b'"partial":true' in value and topic == "oomstream.events.v1"
        return timed_out if partial and attempt == 1 else None

    sink, tally, _ = scripted_sink(script)
    registry = CollectorRegistry()
    sink = KafkaSink(
        sink.config, on_delivery=tally, registry=registry, producer_factory=sink._producer_factory
    )
    async with sink:
        for event in make_events(10, partial_every=5):
            await sink.submit(event)

    def value(name: str, **labels: str) -> float:
        result = registry.get_sample_value(name, {"sink": "kafka", **labels})
        return 0.0 if result is None else result

    assert value("oomstream_sink_events_sent_total", topic="oomstream.events.v1") == 10
    assert value("oomstream_sink_dead_lettered_total", reason="partial_report") == 2
    assert value("oomstream_sink_retries_total", reason="request_timed_out") >= 1
    assert value("oomstream_sink_produce_latency_seconds_count") == 10
    assert value("oomstream_sink_in_flight") == 0


async def test_clients_read_the_password_file_again_at_each_connection(tmp_path: Path) -> None:
    """aiokafka hands its client's password to every connection it opens; the client given to the
    producer reads it from the file each time, so a rotated file is used by the next connection."""
    from aiokafka import AIOKafkaProducer

    from streamer.kafka import Credentials, read_credentials_at_connect

    secret = tmp_path / "pw"
    secret.write_text("first\n")
    options = KafkaOptions(
        BOOT,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password_file=str(secret),
    )
    credentials = Credentials(options)
    producer = AIOKafkaProducer(**connection_kwargs(options, credentials=credentials))
    assert producer.client._sasl_plain_password == "first"
    read_credentials_at_connect(producer, credentials)
    secret.write_text("rotated\n")
    assert producer.client._sasl_plain_password == "rotated"
    secret.unlink()  # mid-rotation: the last good password, not a crash
    assert producer.client._sasl_plain_password == "rotated"
    await producer.stop()


async def test_delivery_timeout_bounds_submit_to_outcome_when_the_broker_never_answers() -> None:
    sink, tally, producers = scripted_sink(lambda *_: None, delivery_timeout_seconds=1.0)
    await sink.start()
    producers[0].hold = asyncio.Event()  # every broker gone: no answer, no error
    began = asyncio.get_running_loop().time()
    await sink.submit(make_events(1)[0], ["p"])
    await sink.flush(5)
    elapsed = asyncio.get_running_loop().time() - began
    await sink.close()
    assert tally.failed == 1 and tally.failures[0].reason == "delivery_timeout"
    assert "delivery_timeout_seconds=1" in (tally.failures[0].error or "")
    assert 0.9 <= elapsed < 2.5, elapsed


async def test_delivery_timeout_ends_resends_before_the_attempts_run_out() -> None:
    sink, tally, _ = scripted_sink(
        lambda *_: kerr.KafkaConnectionError("down"),
        delivery_timeout_seconds=1.0,
        retry_max_attempts=1000,
        retry_initial_backoff_seconds=0.05,
        retry_max_backoff_seconds=0.1,
    )
    began = asyncio.get_running_loop().time()
    async with sink:
        await sink.submit(make_events(1)[0], ["p"])
        await sink.flush(5)
    elapsed = asyncio.get_running_loop().time() - began
    assert tally.failed == 1 and tally.failures[0].reason in ("connection_error", "delivery_timeout")
    assert elapsed < 2.5, elapsed


def test_every_key_field_option_has_a_getter() -> None:
    from streamer.kafka import KEY_FIELDS
    from streamer.sinks.kafka import KEY_GETTERS

    assert tuple(KEY_GETTERS) == KEY_FIELDS
