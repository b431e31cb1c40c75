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
from streamer import kafka
from streamer.config import (
    Config,
    ConfigError,
    Secret,
    add_cli_arguments,
    load_config,
    option_specs,
    overrides_from_args,
    with_overrides,
)
from streamer.sinks.kafka_component import KafkaSinkOptions

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "oomstream.example.toml"


def kafka_of(config: Config) -> KafkaSinkOptions:
    return config.options("sinks.kafka", KafkaSinkOptions)


def write(tmp_path: Path, text: str, name: str = "oomstream.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- defaults and the example file -----------------------------------------------------------------


def test_defaults_need_nothing() -> None:
    config = load_config(None, {}, {})
    assert config == Config()
    assert kafka_of(config).bootstrap_servers == ()
    assert not kafka_of(config).configured
    assert kafka_of(config).events_topic == "oomstream.events.v1"
    assert kafka_of(config).dead_letter_topic == "oomstream.deadletter.v1"
    assert kafka_of(config).acks == "all"
    assert config.metrics.listen_address == "127.0.0.1:9464"
    assert config.components["sources.kmsg"].start == "checkpoint"
    assert config.sources.enabled == ("auto",) and config.sinks.enabled == ("kafka",)
    assert config.origins == {}


def test_example_file_equals_the_defaults() -> None:
    assert load_config(str(EXAMPLE), {}, {}) == Config()


def test_example_file_mentions_every_option() -> None:
    text = EXAMPLE.read_text()
    # Split into sections; an option may appear commented out when it has no default.
    section = None
    seen: set[str] = set()
    for line in text.splitlines():
        if match := re.fullmatch(r"\[([\w.]+)\]", line.strip()):
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

    def check(table: dict[str, Any], prefix: str) -> None:
        nonlocal checked
        for name, value in table.items():
            if prefix + name in specs:
                cfg.convert(specs[prefix + name], value, from_string=False)
                checked += 1
            else:
                check(value, f"{prefix}{name}.")

    check(document, "")
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

    assert Config().components["sources.files"].max_line_bytes == DEFAULT_MAX_LINE_BYTES


def test_every_option_has_help_and_a_unit_where_it_needs_one() -> None:
    for spec in option_specs():
        assert spec.help, spec.key
        base = cfg._inner_types(spec.type)[0]
        if base in (int, float) and spec.name not in ("topic_partitions", "topic_replication_factor"):
            assert re.search(
                r"_(seconds|ms|bytes|attempts|calls|records)$", spec.name
            ) or spec.name.startswith(
                (
                    "queue_",
                    "max_in",
                    "max_tasks",
                    "max_backfill_occurrences",
                    "max_ledger_signals",
                    "max_connections",
                )
            ), spec.key


def test_the_service_and_the_kafka_clients_share_one_options_class() -> None:
    """No option is declared twice: [sinks.kafka] is the class the sink, the inputs, publish and tail use."""
    config = with_overrides(Config(), {"sinks.kafka.bootstrap_servers": "b1:9092"})
    assert isinstance(kafka_of(config), kafka.KafkaOptions)
    assert kafka_of(config).bootstrap_servers == ("b1:9092",)
    assert kafka_of(config).dead_letter_topic == "oomstream.deadletter.v1"
    assert kafka_of(config).key_fields == ("pod_uid", "container_id", "host")
    assert not hasattr(cfg, "KafkaConfig")


def test_renamed_kafka_options_name_the_new_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[kafka]\ndeadletter_topic = "x"\n')
    with pytest.raises(ConfigError, match=r"kafka.deadletter_topic is now sinks.kafka.dead_letter_topic"):
        load_config(path, {}, {})
    with pytest.raises(ConfigError, match=r"kafka.key is now sinks.kafka.key_fields"):
        load_config(None, {"OOMSTREAM_KAFKA_KEY": "host"}, {})


# -- precedence ------------------------------------------------------------------------------------


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
node_name = "from-file"
[sinks.kafka]
linger_ms = 10
batch_size_bytes = 1000
compression = "gzip"
[spool]
max_bytes = "64MiB"
""",
    )
    env = {"OOMSTREAM_SINKS_KAFKA_LINGER_MS": "20", "OOMSTREAM_SINKS_KAFKA_COMPRESSION": "lz4"}
    config = load_config(path, env, {"sinks.kafka.linger_ms": 30})
    assert kafka_of(config).linger_ms == 30  # flag beats env beats file
    assert kafka_of(config).compression == "lz4"  # env beats file
    assert kafka_of(config).batch_size_bytes == 1000  # file beats default
    assert config.spool.max_bytes == 64 * 1024 * 1024
    assert config.node_name == "from-file"
    assert config.origins["sinks.kafka.linger_ms"] == "--sinks-kafka-linger-ms"
    assert config.origins["sinks.kafka.compression"] == "OOMSTREAM_SINKS_KAFKA_COMPRESSION"
    assert config.origins["sinks.kafka.batch_size_bytes"] == path


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[log]\nformat = 'text'\n")
    assert load_config(None, {"OOMSTREAM_CONFIG": path}, {}).log.format == "text"


def test_bootstrap_alias_and_comma_lists(tmp_path: Path) -> None:
    env = {"OOMSTREAM_KAFKA_BOOTSTRAP": "k1:9092, k2:9093"}
    assert kafka_of(load_config(None, env, {})).bootstrap_servers == ("k1:9092", "k2:9093")
    path = write(tmp_path, '[sinks.kafka]\nbootstrap_servers = "a:1,b:2"\nkey_fields = "host"\n')
    config = load_config(path, {}, {})
    assert kafka_of(config).bootstrap_servers == ("a:1", "b:2")
    assert kafka_of(config).key_fields == ("host",)
    both = {"OOMSTREAM_KAFKA_BOOTSTRAP": "a:1", "OOMSTREAM_SINKS_KAFKA_BOOTSTRAP_SERVERS": "b:2"}
    with pytest.raises(ConfigError, match="both set"):
        load_config(None, both, {})


def test_env_lists_bools_and_optionals() -> None:
    env = {
        "OOMSTREAM_SOURCES_FILES_PATHS": "/var/log/a.log,/var/log/b.log",
        "OOMSTREAM_SOURCES_FILES_FOLLOW": "no",
        "OOMSTREAM_SOURCES_JOURNALD_DIRECTORY": "",
        "OOMSTREAM_PIPELINE_LINGER_SECONDS": "0.5",
        "OOMSTREAM_NODE_NAME": "n1",
    }
    config = load_config(None, env, {})
    assert config.components["sources.files"].paths == ("/var/log/a.log", "/var/log/b.log")
    assert config.components["sources.files"].follow is False
    assert config.components["sources.journald"].directory is None
    assert config.pipeline.linger_seconds == 0.5
    assert config.node_name == "n1"


def test_enums_are_case_insensitive_and_canonical() -> None:
    config = load_config(
        None, {"OOMSTREAM_LOG_LEVEL": "debug", "OOMSTREAM_SINKS_KAFKA_COMPRESSION": "ZSTD"}, {}
    )
    assert config.log.level == "DEBUG"
    assert kafka_of(config).compression == "zstd"


@pytest.mark.parametrize("spec", option_specs(), ids=lambda spec: spec.key)
def test_every_option_round_trips_through_its_variable(spec: cfg.OptionSpec) -> None:
    """The string form of each default, set as its variable, loads back to the default."""
    if spec.default is None:
        return
    text = ",".join(spec.default) if isinstance(spec.default, tuple) else str(spec.default)
    assert load_config(None, {spec.env_name: text}, {}) == Config()


# -- unknown names ---------------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[sinks.kafka]\nlingerms = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert str(info.value) == f"{path}: unknown key 'sinks.kafka.lingerms' (did you mean 'linger_ms'?)"
    assert info.value.key == "sinks.kafka.lingerms"


def test_unknown_section_and_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'spoll' \(did you mean 'spool'\?\)"):
        load_config(write(tmp_path, "[spoll]\nmax_bytes = 5\n"), {}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'sinks.kafak' \(did you mean 'kafka'\?\)"):
        load_config(write(tmp_path, "[sinks.kafak]\nlinger_ms = 5\n", "e.toml"), {}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'nodename' \(did you mean 'node_name'\?\)"):
        load_config(write(tmp_path, "nodename = 'x'\n", "b.toml"), {}, {})
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(write(tmp_path, "spool = 3\n", "c.toml"), {}, {})
    with pytest.raises(ConfigError, match=r"unknown key 'sinks.kafka.tls'"):
        load_config(write(tmp_path, "[sinks.kafka.tls]\nx = 1\n", "d.toml"), {}, {})


def test_unknown_environment_variable_with_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"OOMSTREAM_SINKS_KAFKA_LINGERMS": "5"}, {})
    assert str(info.value) == (
        "OOMSTREAM_SINKS_KAFKA_LINGERMS: unknown configuration variable (did you mean OOMSTREAM_SINKS_KAFKA_LINGER_MS?)"
    )
    # Unrelated variables are not ours to judge.
    assert load_config(None, {"KAFKA_LINGERMS": "5", "PATH": "/bin"}, {}) == Config()
    assert (
        load_config(None, {"OOMSTREAM_TEST_THING": "1"}, {}, allowed_env=["OOMSTREAM_TEST_THING"]) == Config()
    )


def test_variables_named_by_env_options_are_not_unknown() -> None:
    env = {
        "OOMSTREAM_SINKS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "OOMSTREAM_SINKS_KAFKA_SASL_USERNAME": "svc",
        "OOMSTREAM_SINKS_KAFKA_SASL_PASSWORD_ENV": "OOMSTREAM_SECRET_KAFKA",
        "OOMSTREAM_SECRET_KAFKA": "s3cret",
    }
    config = load_config(None, env, {})
    assert kafka_of(config).sasl_password_value(env) == "s3cret"


def test_unknown_override_with_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown option 'sinks.kafka.lingerms' \(did you mean 'sinks.kafka.linger_ms'\?\)"
    ):
        load_config(None, {}, {"sinks.kafka.lingerms": 1})


# -- type errors and validation --------------------------------------------------------------------


def test_env_type_error_names_variable_and_expected_type() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"OOMSTREAM_SINKS_KAFKA_LINGER_MS": "soon"}, {})
    assert (
        str(info.value)
        == "OOMSTREAM_SINKS_KAFKA_LINGER_MS (sinks.kafka.linger_ms): expected an integer, got 'soon'"
    )
    with pytest.raises(
        ConfigError,
        match=r"OOMSTREAM_SOURCES_FILES_FOLLOW \(sources.files.follow\): expected true or false",
    ):
        load_config(None, {"OOMSTREAM_SOURCES_FILES_FOLLOW": "maybe"}, {})
    with pytest.raises(ConfigError, match=r"expected a number, got 'nan'"):
        load_config(None, {"OOMSTREAM_PIPELINE_LINGER_SECONDS": "nan"}, {})


def test_flag_type_error_names_the_flag() -> None:
    with pytest.raises(
        ConfigError, match=r"^--spool-max-bytes \(spool.max_bytes\): expected an integer \(bytes"
    ):
        load_config(None, {}, {"spool.max_bytes": "lots"})


def test_file_type_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[sinks.kafka]\nlinger_ms = "5"\n')
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(path)}: sinks.kafka.linger_ms: expected an integer, got '5'"
    ):
        load_config(path, {}, {})
    path = write(tmp_path, "[sources.files]\nfollow = 1\n", "b.toml")
    with pytest.raises(ConfigError, match=r"sources\.files\.follow: expected true or false, got 1"):
        load_config(path, {}, {})
    path = write(tmp_path, "[sinks.kafka]\nkey_fields = [1, 2]\n", "c.toml")
    with pytest.raises(ConfigError, match=r"sinks\.kafka\.key_fields: expected a list of strings"):
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
        ({"sinks.kafka.linger_ms": -5}, r"sinks.kafka.linger_ms: must be >= 0, got -5"),
        ({"sinks.kafka.batch_size_bytes": 0}, r"sinks.kafka.batch_size_bytes: must be > 0, got 0"),
        ({"pipeline.queue_records": 0}, r"pipeline.queue_records: must be > 0, got 0"),
        ({"sinks.kafka.compression": "brotli"}, r"sinks.kafka.compression.*one of 'zstd'.*got 'brotli'"),
        ({"sinks.kafka.compression": "zstdd"}, r"got 'zstdd' \(did you mean 'zstd'\?\)"),
        ({"sinks.kafka.acks": "1"}, r"sinks.kafka.acks.*one of 'all', got '1'"),
        (
            {"sinks.kafka.bootstrap_servers": "broker"},
            r"sinks.kafka.bootstrap_servers: 'broker' is not host:port",
        ),
        (
            {"sinks.kafka.events_topic": "bad topic"},
            r"sinks.kafka.events_topic: 'bad topic' is not a valid topic name",
        ),
        ({"sinks.kafka.key_fields": "pod_uid,podname"}, r"sinks.kafka.key_fields: unknown field 'podname'"),
        ({"sinks.enabled": "file"}, r"sinks.file.path: required when sinks.enabled has 'file'"),
        ({"sinks.file.path": "/tmp/x"}, r"sinks.file.path: is set but sinks.enabled = \['kafka'\]"),
        ({"sources.enabled": "files"}, r"sources.files.paths: required when sources.enabled has 'files'"),
        (
            {"sources.enabled": "kmsg", "sources.files.paths": "/a"},
            r"sources.files.paths: is set but sources.enabled = \['kmsg'\]",
        ),
        ({"sources.enabled": "kmesg"}, r"sources.enabled: unknown source 'kmesg' \(did you mean 'kmsg'\?\)"),
        ({"sinks.enabled": ""}, r"sinks.enabled: needs at least one of kafka, stdout, file"),
        ({"sources.kmsg.path": ""}, r"sources.kmsg.path: must not be empty"),
        ({"sources.files.max_line_bytes": 0}, r"sources.files.max_line_bytes: must be > 0, got 0"),
        ({"metrics.listen_address": "localhost"}, r"metrics.listen_address: 'localhost' is not host:port"),
        (
            {"sinks.kafka.sasl_username": "u"},
            r"sinks.kafka.sasl_username: is set but security_protocol = 'PLAINTEXT'",
        ),
        (
            {"sinks.kafka.ssl_cafile": "/ca"},
            r"sinks.kafka.ssl_cafile: is set but security_protocol = 'PLAINTEXT' uses no TLS",
        ),
        (
            {"sinks.kafka.security_protocol": "SASL_SSL", "sinks.kafka.sasl_username": "u"},
            r"needs sasl_password_file",
        ),
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
    with pytest.raises(ConfigError, match=r"\(set in OOMSTREAM_SINKS_KAFKA_LINGER_MS\)"):
        load_config(None, {"OOMSTREAM_SINKS_KAFKA_LINGER_MS": "-1"}, {})


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
    return {"sinks.kafka.security_protocol": "SASL_SSL", "sinks.kafka.sasl_username": "svc", **extra}


def test_secret_value_is_masked_in_redacted_repr_and_str() -> None:
    config = load_config(None, {"OOMSTREAM_SINKS_KAFKA_SASL_PASSWORD": "hunter2"}, sasl())
    assert kafka_of(config).sasl_password == Secret("hunter2")
    assert kafka_of(config).sasl_password_value() == "hunter2"
    dumped = config.redacted()
    assert dumped["sinks"]["kafka"]["sasl_password"] == "****"
    assert dumped["sinks"]["kafka"]["sasl_username"] == "svc"
    for text in (repr(config), str(config), repr(kafka_of(config)), str(dumped)):
        assert "hunter2" not in text
    assert "sasl_password=Secret('****')" in repr(kafka_of(config))


def test_secret_type_error_does_not_echo_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[sinks.kafka]\nsasl_password = 1234567\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert "1234567" not in str(info.value)


def test_redacted_is_plain_data() -> None:
    dumped = load_config(None, {"OOMSTREAM_KAFKA_BOOTSTRAP": "a:1"}, {}).redacted()
    assert dumped["sinks"]["kafka"]["bootstrap_servers"] == ["a:1"]
    assert set(dumped) == {"node_name", *cfg.CORE_SECTIONS}
    assert set(dumped["sources"]) == {
        "enabled",
        "auto",
        "kmsg",
        "journald",
        "files",
        "stdin",
        "syslog",
        "http",
        "kafka_lines",
    }
    assert set(dumped["sinks"]) == {"enabled", "kafka", "stdout", "file", "k8s_events"}
    import orjson

    assert orjson.loads(orjson.dumps(dumped)) == dumped


def test_password_file_is_read_lazily(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    config = load_config(None, {}, sasl(**{"sinks.kafka.sasl_password_file": str(secret)}))
    assert "first" not in repr(config)
    assert kafka_of(config).sasl_password_value() == "first"
    secret.write_text("rotated")
    assert kafka_of(config).sasl_password_value() == "rotated"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"sasl_password_file = .*cannot read"):
        kafka_of(config).sasl_password_value()


def test_password_env_is_read_lazily() -> None:
    config = load_config(None, {}, sasl(**{"sinks.kafka.sasl_password_env": "KAFKA_PASSWORD"}))
    assert kafka_of(config).sasl_password_value({"KAFKA_PASSWORD": "pw"}) == "pw"
    with pytest.raises(ConfigError, match="'KAFKA_PASSWORD': environment variable is unset or empty"):
        kafka_of(config).sasl_password_value({})


def test_only_one_password_source() -> None:
    with pytest.raises(ConfigError, match="set only one of sasl_password, sasl_password_env"):
        load_config(
            None, {}, sasl(**{"sinks.kafka.sasl_password": "x", "sinks.kafka.sasl_password_env": "Y"})
        )


def test_no_password_without_sasl() -> None:
    assert kafka.KafkaOptions().sasl_password_value() is None


# -- command-line flags ----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="oomstream run")
    add_cli_arguments(result)
    return result


def test_every_option_has_a_flag_except_secrets() -> None:
    flags = {opt for action in parser()._actions for opt in action.option_strings}
    for spec in option_specs():
        assert (spec.flag in flags) is (not spec.secret), spec.key
    assert "--sinks-kafka-linger-ms" in flags
    assert "--no-sources-files-follow" in flags
    assert "--config" in flags


def test_only_given_flags_become_overrides() -> None:
    args = parser().parse_args([])
    assert overrides_from_args(args) == {}
    assert args.config_path is None


def test_flags_convert_and_win(tmp_path: Path) -> None:
    path = write(tmp_path, "[sinks.kafka]\nlinger_ms = 1\n")
    args = parser().parse_args(
        [
            "--config",
            path,
            "--sinks-kafka-linger-ms",
            "7",
            "--no-sources-files-follow",
            "--sinks-kafka-bootstrap-servers",
            "a:1,b:2",
            "--sinks-kafka-bootstrap-servers",
            "c:3",
            "--sources-files-paths",
            "/logs/with,comma.log",
            "--log-level",
            "warning",
            "--node-name",
            "n7",
        ]
    )
    config = load_config(
        args.config_path, {"OOMSTREAM_SINKS_KAFKA_LINGER_MS": "3"}, overrides_from_args(args)
    )
    assert kafka_of(config).linger_ms == 7
    assert config.components["sources.files"].follow is False
    assert kafka_of(config).bootstrap_servers == ("a:1", "b:2", "c:3")
    assert config.components["sources.files"].paths == (
        "/logs/with,comma.log",
    )  # paths are not split on commas
    assert config.log.level == "WARNING"
    assert config.node_name == "n7"


def test_help_renders() -> None:
    text = parser().format_help()
    assert "--spool-max-bytes" in text
    assert "OOMSTREAM_SPOOL_MAX_BYTES" in text


def test_with_overrides_validates() -> None:
    config = with_overrides(Config(), {"sinks.kafka.linger_ms": "9"})
    assert kafka_of(config).linger_ms == 9
    with pytest.raises(ConfigError):
        with_overrides(Config(), {"sinks.kafka.linger_ms": -1})


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


# -- the layout before issue 11: every old key names its new key ----------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[source]\nkind = 'kmsg'\n", "unknown key 'source.kind': source.kind is now sources.enabled"),
        ("[source]\nkmsg_path = '/x'\n", "source.kmsg_path is now sources.kmsg.path"),
        ("[source]\nfiles = ['/x']\n", "source.files is now sources.files.paths"),
        ("[source]\njournald_since = '-1h'\n", "source.journald_since is now sources.journald.since"),
        ("[output]\nsink = 'stdout'\n", "output.sink is now sinks.enabled"),
        ("[output]\npath = '/x'\n", "output.path is now sinks.file.path"),
        ("[kafka]\nlinger_ms = 5\n", "kafka.linger_ms is now sinks.kafka.linger_ms"),
        ("[pipeline]\nmax_line_bytes = 5\n", "pipeline.max_line_bytes is now sources.files.max_line_bytes"),
        ("[pipeline]\nqueue_events = 5\n", "pipeline.queue_events was removed: it was never used"),
    ],
)
def test_old_file_keys_name_the_new_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, toml), {}, {})


def test_old_variables_and_overrides_name_the_new_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"OOMSTREAM_SOURCE_KIND": "kmsg"}, {})
    assert str(info.value) == (
        "OOMSTREAM_SOURCE_KIND: source.kind is now sources.enabled (variable OOMSTREAM_SOURCES_ENABLED)"
    )
    with pytest.raises(ConfigError, match=r"OOMSTREAM_SINKS_KAFKA_EVENTS_TOPIC"):
        load_config(None, {"OOMSTREAM_KAFKA_EVENTS_TOPIC": "t"}, {})
    with pytest.raises(ConfigError, match=r"OOMSTREAM_SINKS_FILE_PATH"):
        load_config(None, {"OOMSTREAM_OUTPUT_PATH": "/x"}, {})
    with pytest.raises(ConfigError, match=r"'output.sink': output.sink is now sinks.enabled"):
        load_config(None, {}, {"output.sink": "stdout"})
    # the short bootstrap alias stays: every deployment and `make run` use it
    assert kafka_of(load_config(None, {"OOMSTREAM_KAFKA_BOOTSTRAP": "a:1"}, {})).bootstrap_servers == ("a:1",)


def test_every_registered_component_has_a_table_and_options() -> None:
    from streamer import registry

    tables = set(cfg.sections()) - set(cfg.CORE_SECTIONS)
    assert tables == set(registry.COMPONENTS)
    for table in registry.COMPONENTS:
        component = registry.component(table)
        assert dataclasses.is_dataclass(component.options) and component.help, table
        assert component.options.__dataclass_params__.frozen, table  # type: ignore[attr-defined]
        assert isinstance(Config().components[table], component.options)
    assert registry.names("sources") == [
        "auto",
        "kmsg",
        "journald",
        "files",
        "stdin",
        "syslog",
        "http",
        "kafka_lines",
    ]
    assert registry.names("sinks") == ["kafka", "stdout", "file", "k8s_events"]


def test_reading_the_configuration_imports_no_client_library() -> None:
    """Component modules are imported to read their options; their heavy client libraries must
    wait for build(), so check-config and --help stay cheap as components are added."""
    import subprocess
    import sys

    code = (
        "import sys; from streamer.config import load_config, option_specs; "
        "load_config(None, {}, {}); option_specs(); "
        "print(sorted(m for m in ('aiokafka', 'kubernetes_asyncio', 'aiohttp') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source-kind", "kmsg"], "--source-kind: renamed --sources-enabled"),
        (["--no-source-follow"], "--no-source-follow: renamed --no-sources-files-follow"),
        (["--output-path", "/x"], "--output-path: renamed --sinks-file-path"),
        (["--kafka-linger-ms", "5"], "--kafka-linger-ms: renamed --sinks-kafka-linger-ms"),
        (["--pipeline-queue-events", "5"], "pipeline.queue_events was removed"),
        (["--syslog-enabled"], '--syslog-enabled: renamed --sources-enabled (add "syslog")'),
        (["--http-listen-address", "x"], "--http-listen-address: renamed --sources-http-listen-address"),
        (["--kafka-input-topics", "t"], "--kafka-input-topics: renamed --sources-kafka-lines-topics"),
    ],
)
def test_old_flags_name_the_new_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert message in capsys.readouterr().err
    assert "--source-kind" not in parser().format_help()  # not offered, only explained
