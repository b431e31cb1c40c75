"""Bad configuration against a REAL broker: a clear error naming the setting, within a bounded time."""

from __future__ import annotations

import argparse
import io
import time

import pytest
from prometheus_client import CollectorRegistry

from streamer.commands import publish
from streamer.kafka import KafkaOptions
from streamer.sinks import FatalSinkError, SinkConfigError
from streamer.sinks.kafka import KafkaSink
from tests.integration.kafka_broker import unique_topic

pytestmark = pytest.mark.kafka


async def start_fails(config: KafkaOptions, bound_seconds: float) -> FatalSinkError:
    began = time.monotonic()
    with pytest.raises(FatalSinkError) as info:
        async with KafkaSink(config, registry=CollectorRegistry()):
            pass
    elapsed = time.monotonic() - began
    assert elapsed < bound_seconds, f"took {elapsed:.1f}s: {info.value}"
    return info.value


async def test_unreachable_bootstrap_names_the_setting() -> None:
    config = KafkaOptions(("127.0.0.1:1",), connect_timeout_seconds=3, origin="test.toml [kafka]")
    error = await start_fails(config, 6)
    assert error.setting == "bootstrap_servers"
    message = str(error)
    assert "bootstrap_servers=127.0.0.1:1" in message and "connect_timeout_seconds=3" in message
    assert "test.toml [kafka]" in message and "Connect call failed" in message


async def test_sasl_against_a_plaintext_listener_fails_clearly(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IT_KAFKA_PASSWORD", "not-used")
    for mechanism in ("PLAIN", "SCRAM-SHA-512"):
        config = KafkaOptions(
            tuple(kafka_bootstrap.split(",")),
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_username="svc",
            sasl_password_env="IT_KAFKA_PASSWORD",
            connect_timeout_seconds=5,
        )
        error = await start_fails(config, 8)
        message = str(error)
        assert error.setting == "sasl_mechanism"
        assert "SASL authentication" in message and f"sasl_mechanism={mechanism!r}" in message
        assert "not-used" not in message  # the secret never shows


async def test_tls_against_a_plaintext_listener_fails_clearly(kafka_bootstrap: str) -> None:
    config = KafkaOptions(
        tuple(kafka_bootstrap.split(",")), security_protocol="SSL", connect_timeout_seconds=3
    )
    error = await start_fails(config, 6)
    assert "security_protocol='SSL'" in str(error)


async def test_missing_topic_with_creation_off_names_topic_and_setting(kafka_bootstrap: str) -> None:
    topic = unique_topic("missing")
    config = KafkaOptions(tuple(kafka_bootstrap.split(",")), events_topic=topic, topic_policy="check")
    error = await start_fails(config, 5)
    assert isinstance(error, SinkConfigError) and error.setting == "topic_policy"
    assert f"topic {topic!r} (events_topic) does not exist" in str(error)
    assert "topic_policy='check'" in str(error)


async def test_missing_dead_letter_topic_with_creation_off(kafka_bootstrap: str) -> None:
    # Create the events topic first, then check mode must still refuse the missing dead-letter topic.
    events_topic = unique_topic("present")
    async with KafkaSink(
        KafkaOptions(tuple(kafka_bootstrap.split(",")), events_topic=events_topic, dead_letter_topic=""),
        registry=CollectorRegistry(),
    ):
        pass
    dead = unique_topic("dead-missing")
    config = KafkaOptions(
        tuple(kafka_bootstrap.split(",")),
        events_topic=events_topic,
        dead_letter_topic=dead,
        topic_policy="check",
    )
    error = await start_fails(config, 5)
    assert f"topic {dead!r} (dead_letter_topic) does not exist" in str(error)


def _publish_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="oomstream")
    publish.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["publish", *argv])


def test_publish_without_bootstrap_names_flag_and_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamer.cli import CliError

    monkeypatch.delenv("OOMSTREAM_KAFKA_BOOTSTRAP", raising=False)
    log = tmp_path / "k.log"
    log.write_text("")
    args = _publish_args([str(log)])
    with pytest.raises(CliError, match=r"--bootstrap HOST:PORT.*OOMSTREAM_KAFKA_BOOTSTRAP"):
        args.handler(args, io.StringIO(), io.StringIO())
    args = _publish_args([str(log), "--bootstrap", "127.0.0.1:1", "--sinks-kafka-connect-timeout-seconds", "2"])
    began = time.monotonic()
    with pytest.raises(CliError, match=r"bootstrap_servers=127\.0\.0\.1:1 .*oomstream publish options"):
        args.handler(args, io.StringIO(), io.StringIO())
    assert time.monotonic() - began < 5
    args = _publish_args([str(log), "--bootstrap", "127.0.0.1:1", "-o", "linger=3"])
    with pytest.raises(
        CliError, match=r"unknown key .linger. in oomstream publish options \(did you mean .linger_ms.\?\)"
    ):
        args.handler(args, io.StringIO(), io.StringIO())
