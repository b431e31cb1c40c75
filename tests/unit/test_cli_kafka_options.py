"""`publish` and `tail` read the Kafka options exactly as `run` does: the same --config file, the
same OOMSTREAM_SINKS_KAFKA_* variables, the same --sinks-kafka-* flags, into the one KafkaOptions class."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streamer.commands import arguments
from streamer.commands.publish import kafka_options_from_args
from streamer.errors import CliError
from streamer.kafka import KafkaOptions


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="oomstream")
    sub = result.add_subparsers(dest="command", required=True)
    arguments.add_run_parser(sub)
    arguments.add_publish_parser(sub)
    arguments.add_tail_parser(sub)
    return result


def kafka_flags(command: str) -> set[str]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for a in sub.choices[command]._actions for s in a.option_strings if s.startswith(("--sinks-kafka-", "--kafka-"))}


def test_publish_and_tail_have_every_kafka_flag_of_run() -> None:
    run = kafka_flags("run")
    assert "--sinks-kafka-dead-letter-topic" in run and "--sinks-kafka-delivery-timeout-seconds" in run
    run = {flag for flag in run if flag.startswith("--sinks-kafka-")}  # not the old layout's, refused
    assert kafka_flags("publish") - {"--kafka-option"} == run
    assert kafka_flags("tail") - {"--kafka-option"} == run


def test_config_file_then_variables_then_flags_then_short_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OOMSTREAM_KAFKA_BOOTSTRAP", "OOMSTREAM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "oomstream.toml"
    config.write_text(
        '[sinks.kafka]\nbootstrap_servers = ["a:9092"]\nlinger_ms = 7\ncompression = "gzip"\n'
        'dead_letter_topic = "dl.file"\nclient_id = "from-file"\n'
    )
    monkeypatch.setenv("OOMSTREAM_SINKS_KAFKA_COMPRESSION", "lz4")
    argv = ["publish", "x.log", "--config", str(config), "--sinks-kafka-linger-ms", "9", "--topic", "ev.short"]
    options = kafka_options_from_args(parser().parse_args([*argv, "-o", "client_id=from-o"]), "publish")
    assert isinstance(options, KafkaOptions)
    assert options.bootstrap_servers == ("a:9092",) and options.dead_letter_topic == "dl.file"
    assert (options.compression, options.linger_ms) == ("lz4", 9)  # variable over file, flag over file
    assert (options.events_topic, options.client_id) == ("ev.short", "from-o")
    assert options.origin == f"oomstream publish options and {config}"
    tail = kafka_options_from_args(parser().parse_args(["tail", "--config", str(config)]), "tail")
    assert tail.bootstrap_servers == ("a:9092",) and tail.linger_ms == 7


def test_secrets_and_unknown_keys_are_refused_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OOMSTREAM_KAFKA_BOOTSTRAP", "b:1")
    args = parser().parse_args(["tail", "-o", "sasl_password=hunter2"])
    with pytest.raises(CliError, match=r"sasl_password: secrets are not accepted as values") as info:
        kafka_options_from_args(args, "tail")
    assert "hunter2" not in str(info.value)
    args = parser().parse_args(["tail", "-o", "deadletter_topic=x"])
    with pytest.raises(CliError, match=r"kafka.deadletter_topic is now sinks.kafka.dead_letter_topic"):
        kafka_options_from_args(args, "tail")
