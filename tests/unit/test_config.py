"""Configuration: sources and precedence, name checks, type errors, validation, secrets, flags."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest

from streamer import config as cfg
from streamer.config import (
    Config,
    ConfigError,
    KafkaConfig,
    Secret,
    add_cli_arguments,
    load_config,
    option_specs,
    overrides_from_args,
    with_overrides,
)
from streamer.sinks import kafka

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "oomstream.example.toml"


def write(tmp_path: Path, text: str, name: str = "oomstream.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- defaults and the example file -----------------------------------------------------------------


def test_defaults_need_nothing() -> None:
    config = load_config(None, {}, {})
    assert config == Config()
    assert config.kafka.bootstrap_servers == ()
    assert not config.kafka.configured
    assert config.kafka.events_topic == "oomstream.events.v1"
    assert config.kafka.deadletter_topic == "oomstream.deadletter.v1"
    assert config.kafka.acks == "all"
    assert config.metrics.listen_address == "127.0.0.1:9464"
    assert config.source.kmsg_start == "checkpoint"
    assert config.origins == {}


def test_example_file_equals_the_defaults() -> None:
    assert load_config(str(EXAMPLE), {}, {}) == Config()


def test_example_file_mentions_every_option() -> None:
    text = EXAMPLE.read_text()
    # Split into sections; an option may appear commented out when it has no default.
    section = None
    seen: set[str] = set()
    for line in text.splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = match.group(1)
            continue
        if match := re.match(r"^#? ?(\w+) = ", line):
            seen.add(f"{section}.{match.group(1)}" if section else match.group(1))
    expected = {spec.key for spec in option_specs()}
    assert expected - seen == set(), "options missing from deploy/oomstream.example.toml"
    assert seen - expected == set(), "example mentions options that do not exist"


def test_example_file_commented_values_are_valid() -> None:
    # Uncommenting an example value must give a loadable option (types, not combinations).
    text = EXAMPLE.read_text()
    document = tomllib.loads(re.sub(r"(?m)^# (?=\w+ = )", "", text))
    specs = {spec.key: spec for spec in option_specs()}
    checked = 0
    for name, value in document.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for option, item in items:
            key = f"{name}.{option}" if option else name
            cfg.convert(specs[key], item, from_string=False)
            checked += 1
    assert checked == len(specs)


def test_file_formats_match_the_framer() -> None:
    from parsers.framing import FORMATS

    assert set(get_args(cfg.FileFormat)) == set(FORMATS)


def test_pipeline_defaults_match_the_assembler() -> None:
    import inspect

    from parsers.oom import Assembler

    params = inspect.signature(Assembler).parameters
    pipeline = Config().pipeline
    for name in ("linger_seconds", "report_timeout_seconds", "max_tasks"):
        assert getattr(pipeline, name) == params[name].default, name
    from parsers.scan import DEFAULT_MAX_LINE_BYTES

    assert pipeline.max_line_bytes == DEFAULT_MAX_LINE_BYTES


def test_every_option_has_help_and_a_unit_where_it_needs_one() -> None:
    for spec in option_specs():
        assert spec.help, spec.key
        base = cfg._inner_types(spec.type)[0]
        if base in (int, float) and spec.name not in ("topic_partitions", "topic_replication_factor"):
            assert re.search(r"_(seconds|ms|bytes|records)$", spec.name) or spec.name.startswith(
                ("queue_", "max_in", "max_tasks", "max_connections")
            ), spec.key


def test_sink_options_use_the_kafka_sink_names() -> None:
    names = {f.name for f in dataclasses.fields(kafka.KafkaSinkConfig)}
    config = with_overrides(Config(), {"kafka.bootstrap_servers": "b1:9092"})
    options = config.kafka.sink_options()
    assert set(options) <= names
    sink_config = kafka.KafkaSinkConfig.from_mapping(options, "test")
    assert sink_config.bootstrap_servers == ("b1:9092",)
    assert sink_config.dead_letter_topic == "oomstream.deadletter.v1"
    assert sink_config.key_fields == ("pod_uid", "container_id", "host")


# -- precedence ------------------------------------------------------------------------------------


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
node_name = "from-file"
[kafka]
linger_ms = 10
batch_size_bytes = 1000
compression = "gzip"
[spool]
max_bytes = "64MiB"
""",
    )
    env = {"OOMSTREAM_KAFKA_LINGER_MS": "20", "OOMSTREAM_KAFKA_COMPRESSION": "lz4"}
    config = load_config(path, env, {"kafka.linger_ms": 30})
    assert config.kafka.linger_ms == 30  # flag beats env beats file
    assert config.kafka.compression == "lz4"  # env beats file
    assert config.kafka.batch_size_bytes == 1000  # file beats default
    assert config.spool.max_bytes == 64 * 1024 * 1024
    assert config.node_name == "from-file"
    assert config.origins["kafka.linger_ms"] == "--kafka-linger-ms"
    assert config.origins["kafka.compression"] == "OOMSTREAM_KAFKA_COMPRESSION"
    assert config.origins["kafka.batch_size_bytes"] == path


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[log]\nformat = 'text'\n")
    assert load_config(None, {"OOMSTREAM_CONFIG": path}, {}).log.format == "text"


def test_bootstrap_alias_and_comma_lists(tmp_path: Path) -> None:
    env = {"OOMSTREAM_KAFKA_BOOTSTRAP": "k1:9092, k2:9093"}
    assert load_config(None, env, {}).kafka.bootstrap_servers == ("k1:9092", "k2:9093")
    path = write(tmp_path, '[kafka]\nbootstrap_servers = "a:1,b:2"\nkey = "host"\n')
    config = load_config(path, {}, {})
    assert config.kafka.bootstrap_servers == ("a:1", "b:2")
    assert config.kafka.key == ("host",)
    both = {"OOMSTREAM_KAFKA_BOOTSTRAP": "a:1", "OOMSTREAM_KAFKA_BOOTSTRAP_SERVERS": "b:2"}
    with pytest.raises(ConfigError, match="both set"):
        load_config(None, both, {})


def test_env_lists_bools_and_optionals() -> None:
    env = {
        "OOMSTREAM_SOURCE_FILES": "/var/log/a.log,/var/log/b.log",
        "OOMSTREAM_SOURCE_FOLLOW": "no",
        "OOMSTREAM_SOURCE_JOURNALD_DIRECTORY": "",
        "OOMSTREAM_PIPELINE_LINGER_SECONDS": "0.5",
        "OOMSTREAM_NODE_NAME": "n1",
    }
    config = load_config(None, env, {})
    assert config.source.files == ("/var/log/a.log", "/var/log/b.log")
    assert config.source.follow is False
    assert config.source.journald_directory is None
    assert config.pipeline.linger_seconds == 0.5
    assert config.node_name == "n1"


def test_enums_are_case_insensitive_and_canonical() -> None:
    config = load_config(None, {"OOMSTREAM_LOG_LEVEL": "debug", "OOMSTREAM_KAFKA_COMPRESSION": "ZSTD"}, {})
    assert config.log.level == "DEBUG"
    assert config.kafka.compression == "zstd"


@pytest.mark.parametrize("spec", option_specs(), ids=lambda spec: spec.key)
def test_every_option_round_trips_through_its_variable(spec: cfg.OptionSpec) -> None:
    """The string form of each default, set as its variable, loads back to the default."""
    if spec.default is None:
        return
    text = ",".join(spec.default) if isinstance(spec.default, tuple) else str(spec.default)
    assert load_config(None, {spec.env_name: text}, {}) == Config()


# -- unknown names ---------------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\nlingerms = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert str(info.value) == f"{path}: unknown key 'kafka.lingerms' (did you mean 'linger_ms'?)"
    assert info.value.key == "kafka.lingerms"


def test_unknown_section_and_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'kafak' \(did you mean 'kafka'\?\)"):
        load_config(write(tmp_path, "[kafak]\nlinger_ms = 5\n"), {}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'nodename' \(did you mean 'node_name'\?\)"):
        load_config(write(tmp_path, "nodename = 'x'\n", "b.toml"), {}, {})
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(write(tmp_path, "kafka = 3\n", "c.toml"), {}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'kafka.tls'"):
        load_config(write(tmp_path, "[kafka.tls]\nx = 1\n", "d.toml"), {}, {})


def test_unknown_environment_variable_with_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"OOMSTREAM_KAFKA_LINGERMS": "5"}, {})
    assert str(info.value) == (
        "OOMSTREAM_KAFKA_LINGERMS: unknown configuration variable (did you mean OOMSTREAM_KAFKA_LINGER_MS?)"
    )
    # Unrelated variables are not ours to judge.
    assert load_config(None, {"KAFKA_LINGERMS": "5", "PATH": "/bin"}, {}) == Config()
    assert (
        load_config(None, {"OOMSTREAM_TEST_THING": "1"}, {}, allowed_env=["OOMSTREAM_TEST_THING"]) == Config()
    )


def test_variables_named_by_env_options_are_not_unknown() -> None:
    env = {
        "OOMSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "OOMSTREAM_KAFKA_SASL_USERNAME": "svc",
        "OOMSTREAM_KAFKA_SASL_PASSWORD_ENV": "OOMSTREAM_SECRET_KAFKA",
        "OOMSTREAM_SECRET_KAFKA": "s3cret",
    }
    config = load_config(None, env, {})
    assert config.kafka.sasl_password_value(env) == "s3cret"


def test_unknown_override_with_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown option 'kafka.lingerms' \(did you mean 'kafka.linger_ms'\?\)"
    ):
        load_config(None, {}, {"kafka.lingerms": 1})


# -- type errors and validation --------------------------------------------------------------------


def test_env_type_error_names_variable_and_expected_type() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"OOMSTREAM_KAFKA_LINGER_MS": "soon"}, {})
    assert str(info.value) == "OOMSTREAM_KAFKA_LINGER_MS (kafka.linger_ms): expected an integer, got 'soon'"
    with pytest.raises(
        ConfigError, match=r"OOMSTREAM_SOURCE_FOLLOW \(source.follow\): expected true or false"
    ):
        load_config(None, {"OOMSTREAM_SOURCE_FOLLOW": "maybe"}, {})
    with pytest.raises(ConfigError, match=r"expected a number, got 'nan'"):
        load_config(None, {"OOMSTREAM_PIPELINE_LINGER_SECONDS": "nan"}, {})


def test_flag_type_error_names_the_flag() -> None:
    with pytest.raises(
        ConfigError, match=r"^--spool-max-bytes \(spool.max_bytes\): expected an integer \(bytes"
    ):
        load_config(None, {}, {"spool.max_bytes": "lots"})


def test_file_type_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[kafka]\nlinger_ms = "5"\n')
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(path)}: kafka.linger_ms: expected an integer, got '5'"
    ):
        load_config(path, {}, {})
    path = write(tmp_path, "[source]\nfollow = 1\n", "b.toml")
    with pytest.raises(ConfigError, match=r"source\.follow: expected true or false, got 1"):
        load_config(path, {}, {})
    path = write(tmp_path, "[kafka]\nkey = [1, 2]\n", "c.toml")
    with pytest.raises(ConfigError, match=r"kafka\.key: expected a list of strings"):
        load_config(path, {}, {})


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[kafka\n"), {}, {})
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(str(tmp_path / "absent.toml"), {}, {})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"spool.max_bytes": -1}, r"spool.max_bytes: must be >= 2 x segment_bytes \(16777216\), got -1"),
        ({"spool.segment_bytes": 100}, r"spool.segment_bytes: must be >= 4096, got 100"),
        ({"kafka.linger_ms": -5}, r"kafka.linger_ms: must be >= 0, got -5"),
        ({"kafka.batch_size_bytes": 0}, r"kafka.batch_size_bytes: must be > 0, got 0"),
        ({"pipeline.queue_records": 0}, r"pipeline.queue_records: must be > 0, got 0"),
        ({"kafka.compression": "brotli"}, r"kafka.compression.*one of 'zstd'.*got 'brotli'"),
        ({"kafka.compression": "zstdd"}, r"got 'zstdd' \(did you mean 'zstd'\?\)"),
        ({"kafka.acks": "1"}, r"kafka.acks.*one of 'all', got '1'"),
        ({"kafka.bootstrap_servers": "broker"}, r"kafka.bootstrap_servers: 'broker' is not host:port"),
        ({"kafka.events_topic": "bad topic"}, r"kafka.events_topic: 'bad topic' is not a valid topic name"),
        ({"kafka.key": "pod_uid,podname"}, r"kafka.key: unknown field 'podname'"),
        ({"output.sink": "file"}, r"output.path: required when output.sink = 'file'"),
        ({"output.path": "/tmp/x"}, r"output.path: is set but output.sink = 'kafka'"),
        ({"source.kind": "file"}, r"source.files: required when source.kind = 'file'"),
        ({"source.kind": "kmsg", "source.files": "/a"}, r"source.files: is set but source.kind = 'kmsg'"),
        ({"metrics.listen_address": "localhost"}, r"metrics.listen_address: 'localhost' is not host:port"),
        ({"kafka.sasl_username": "u"}, r"kafka.sasl_username: is set but security_protocol = 'PLAINTEXT'"),
        (
            {"kafka.ssl_cafile": "/ca"},
            r"kafka.ssl_cafile: is set but security_protocol = 'PLAINTEXT' uses no TLS",
        ),
        ({"kafka.security_protocol": "SASL_SSL", "kafka.sasl_username": "u"}, r"needs sasl_password_file"),
    ],
)
def test_validation_names_option_and_value(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, {}, overrides)
    assert info.value.key is not None


def test_validation_error_says_where_the_value_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "[spool]\nsegment_bytes = 1024\n")
    with pytest.raises(ConfigError, match=rf"must be >= 4096, got 1024 \(set in {re.escape(path)}\)"):
        load_config(path, {}, {})
    with pytest.raises(ConfigError, match=r"\(set in OOMSTREAM_KAFKA_LINGER_MS\)"):
        load_config(None, {"OOMSTREAM_KAFKA_LINGER_MS": "-1"}, {})


def test_sizes_accept_unit_suffixes() -> None:
    assert cfg.parse_size("256MiB") == 256 * 2**20
    assert cfg.parse_size("8 MB") == 8_000_000
    assert cfg.parse_size("1g") == 2**30
    assert cfg.parse_size("4096") == 4096
    with pytest.raises(ValueError):
        cfg.parse_size("12 parsecs")
    assert load_config(None, {"OOMSTREAM_SPOOL_SEGMENT_BYTES": "1_048_576"}, {}).spool.segment_bytes == 2**20


# -- secrets ---------------------------------------------------------------------------------------


def sasl(**extra: Any) -> dict[str, Any]:
    return {"kafka.security_protocol": "SASL_SSL", "kafka.sasl_username": "svc", **extra}


def test_secret_value_is_masked_in_redacted_repr_and_str() -> None:
    config = load_config(None, {"OOMSTREAM_KAFKA_SASL_PASSWORD": "hunter2"}, sasl())
    assert config.kafka.sasl_password == Secret("hunter2")
    assert config.kafka.sasl_password_value() == "hunter2"
    dumped = config.redacted()
    assert dumped["kafka"]["sasl_password"] == "****"
    assert dumped["kafka"]["sasl_username"] == "svc"
    for text in (repr(config), str(config), repr(config.kafka), str(dumped)):
        assert "hunter2" not in text
    assert "sasl_password=Secret('****')" in repr(config.kafka)


def test_secret_type_error_does_not_echo_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\nsasl_password = 1234567\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert "1234567" not in str(info.value)


def test_redacted_is_plain_data() -> None:
    dumped = load_config(None, {"OOMSTREAM_KAFKA_BOOTSTRAP": "a:1"}, {}).redacted()
    assert dumped["kafka"]["bootstrap_servers"] == ["a:1"]
    assert set(dumped) == {"node_name", *cfg.SECTIONS}
    import orjson

    assert orjson.loads(orjson.dumps(dumped)) == dumped


def test_password_file_is_read_lazily(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    config = load_config(None, {}, sasl(**{"kafka.sasl_password_file": str(secret)}))
    assert "first" not in repr(config)
    assert config.kafka.sasl_password_value() == "first"
    secret.write_text("rotated")
    assert config.kafka.sasl_password_value() == "rotated"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"sasl_password_file = .*cannot read"):
        config.kafka.sasl_password_value()


def test_password_env_is_read_lazily() -> None:
    config = load_config(None, {}, sasl(**{"kafka.sasl_password_env": "KAFKA_PASSWORD"}))
    assert config.kafka.sasl_password_value({"KAFKA_PASSWORD": "pw"}) == "pw"
    with pytest.raises(ConfigError, match="'KAFKA_PASSWORD': environment variable is unset or empty"):
        config.kafka.sasl_password_value({})


def test_only_one_password_source() -> None:
    with pytest.raises(ConfigError, match="set only one of sasl_password, sasl_password_env"):
        load_config(None, {}, sasl(**{"kafka.sasl_password": "x", "kafka.sasl_password_env": "Y"}))


def test_no_password_without_sasl() -> None:
    assert KafkaConfig().sasl_password_value() is None


# -- command-line flags ----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="oomstream run")
    add_cli_arguments(result)
    return result


def test_every_option_has_a_flag_except_secrets() -> None:
    flags = {opt for action in parser()._actions for opt in action.option_strings}
    for spec in option_specs():
        assert (spec.flag in flags) is (not spec.secret), spec.key
    assert "--kafka-linger-ms" in flags
    assert "--no-source-follow" in flags
    assert "--config" in flags


def test_only_given_flags_become_overrides() -> None:
    args = parser().parse_args([])
    assert overrides_from_args(args) == {}
    assert args.config_path is None


def test_flags_convert_and_win(tmp_path: Path) -> None:
    path = write(tmp_path, "[kafka]\nlinger_ms = 1\n")
    args = parser().parse_args(
        [
            "--config",
            path,
            "--kafka-linger-ms",
            "7",
            "--no-source-follow",
            "--kafka-bootstrap-servers",
            "a:1,b:2",
            "--kafka-bootstrap-servers",
            "c:3",
            "--source-files",
            "/logs/with,comma.log",
            "--log-level",
            "warning",
            "--node-name",
            "n7",
        ]
    )
    config = load_config(args.config_path, {"OOMSTREAM_KAFKA_LINGER_MS": "3"}, overrides_from_args(args))
    assert config.kafka.linger_ms == 7
    assert config.source.follow is False
    assert config.kafka.bootstrap_servers == ("a:1", "b:2", "c:3")
    assert config.source.files == ("/logs/with,comma.log",)  # paths are not split on commas
    assert config.log.level == "WARNING"
    assert config.node_name == "n7"


def test_help_renders() -> None:
    text = parser().format_help()
    assert "--spool-max-bytes" in text
    assert "OOMSTREAM_SPOOL_MAX_BYTES" in text


def test_with_overrides_validates() -> None:
    config = with_overrides(Config(), {"kafka.linger_ms": "9"})
    assert config.kafka.linger_ms == 9
    with pytest.raises(ConfigError):
        with_overrides(Config(), {"kafka.linger_ms": -1})


def test_resolved_node_name() -> None:
    assert Config(node_name="x").resolved_node_name({}) == "x"
    assert Config().resolved_node_name({"NODE_NAME": "from-downward-api"}) == "from-downward-api"
    assert Config().resolved_node_name({}) == os.uname().nodename


def test_split_host_port() -> None:
    assert cfg.split_host_port("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert cfg.split_host_port("[::1]:0") == ("::1", 0)
    assert cfg.split_host_port(":9464") == ("", 9464)
    with pytest.raises(ValueError):
        cfg.split_host_port("host:99999")
