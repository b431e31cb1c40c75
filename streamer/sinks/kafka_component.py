"""The Kafka sink as a component: the ``[sinks.kafka]`` options and how the sink is built.

``KafkaConfig`` is the one declaration of the Kafka options the service reads (the sink's own
``KafkaSinkConfig`` is built from it in ``sink_config``). The Kafka client module of issue 11 item 3
replaces both with one options class; the registration below then changes in one line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from streamer.config import (
    TOPIC_NAME,
    ConfigError,
    Secret,
    _fail,
    _non_negative,
    _positive,
    _suggest,
)
from streamer.config import option_help as _help
from streamer.registry import BuildContext, Component

if TYPE_CHECKING:
    from streamer.sinks.kafka import KafkaSink, KafkaSinkConfig

Acks = Literal["all"]
Compression = Literal["zstd", "gzip", "lz4", "snappy", "none"]
PartialPolicy = Literal["both", "dead_letter_only"]
TopicPolicy = Literal["create", "check"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# Event fields a Kafka record key can be taken from (the first one that is set wins).
KEY_FIELDS = ("pod_uid", "container_id", "host", "boot_id", "oom_memcg", "task_memcg", "event_id")
_HOST_PORT = re.compile(r"\[?[\w.:-]+\]?:\d{1,5}")


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    SECTION: ClassVar[str] = "sinks.kafka"

    bootstrap_servers: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "broker host:port list (or one comma-separated string); empty: not configured", csv=True
        ),
    )
    events_topic: str = field(default="oomstream.events.v1", metadata=_help("topic for OOM events"))
    deadletter_topic: str = field(
        default="oomstream.deadletter.v1",
        metadata=_help("topic for partial/unparseable reports with raw lines; empty: none"),
    )
    client_id: str = field(default="oomstream", metadata=_help("Kafka client id (broker logs, quotas)"))
    acks: Acks = field(
        default="all",
        metadata=_help("fixed: every in-sync replica must have an event before it counts as sent"),
    )
    compression: Compression = field(
        default="zstd", metadata=_help("record batch compression: zstd, gzip, lz4, snappy, none")
    )
    linger_ms: int = field(default=5, metadata=_help("wait this long to fill a batch before sending"))
    batch_size_bytes: int = field(default=262144, metadata=_help("maximum record batch size per partition"))
    max_request_size_bytes: int = field(
        default=1048576, metadata=_help("largest produce request (and record) sent")
    )
    max_in_flight: int = field(
        default=20000, metadata=_help("events submitted and not yet acknowledged, at most (backpressure)")
    )
    request_timeout_seconds: float = field(
        default=30.0, metadata=_help("one produce/metadata request, at most")
    )
    connect_timeout_seconds: float = field(
        default=10.0, metadata=_help("first connection to the cluster at start, at most")
    )
    delivery_timeout_seconds: float = field(
        default=120.0,
        metadata=_help(
            "resending a failed event stops after this long; an event not acknowledged this long "
            "plus 2 x request_timeout_seconds after its submission fails (and is spooled)"
        ),
    )
    key: tuple[str, ...] = field(
        default=("pod_uid", "container_id", "host"),
        metadata=_help(
            "record key: the first of these event fields that is set (" + ", ".join(KEY_FIELDS) + ")",
            csv=True,
        ),
    )
    partial_events: PartialPolicy = field(
        default="both",
        metadata=_help("partial reports: both (events topic + dead letter) or dead_letter_only"),
    )
    topic_policy: TopicPolicy = field(
        default="create", metadata=_help("missing topics: create them, or check (fail at start)")
    )
    topic_partitions: int = field(default=6, metadata=_help("partitions of topics this service creates"))
    topic_replication_factor: int = field(
        default=0, metadata=_help("replication of topics it creates; 0: min(3, brokers)")
    )
    security_protocol: SecurityProtocol = field(
        default="PLAINTEXT", metadata=_help("PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    )
    sasl_mechanism: SaslMechanism = field(
        default="PLAIN", metadata=_help("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    )
    sasl_username: str | None = field(default=None, metadata=_help("SASL user name"))
    sasl_password: Secret | None = field(
        default=None,
        metadata=_help("SASL password as a value (masked in output); prefer sasl_password_file or _env"),
    )
    sasl_password_file: str | None = field(
        default=None, metadata=_help("file holding the SASL password, read at connect time")
    )
    sasl_password_env: str | None = field(
        default=None, metadata=_help("environment variable holding the SASL password")
    )
    ssl_cafile: str | None = field(
        default=None, metadata=_help("CA bundle to verify brokers; unset: the system CAs")
    )
    ssl_certfile: str | None = field(default=None, metadata=_help("client certificate (PEM) for mutual TLS"))
    ssl_keyfile: str | None = field(
        default=None, metadata=_help("client private key (PEM); unset: in ssl_certfile")
    )
    ssl_key_password_file: str | None = field(
        default=None, metadata=_help("file holding the private key's password")
    )
    ssl_key_password_env: str | None = field(
        default=None, metadata=_help("environment variable holding the private key's password")
    )
    ssl_check_hostname: bool = field(
        default=True, metadata=_help("verify that broker certificates match their host names")
    )

    def __post_init__(self) -> None:
        s = self.SECTION
        for server in self.bootstrap_servers:
            if not _HOST_PORT.fullmatch(server.strip()):
                raise _fail(s, "bootstrap_servers", f"{server!r} is not host:port")
        for key in ("events_topic", "deadletter_topic"):
            topic = getattr(self, key)
            if (topic or key == "events_topic") and not TOPIC_NAME.fullmatch(topic):
                raise _fail(s, key, f"{topic!r} is not a valid topic name ([A-Za-z0-9._-], 1 to 249)")
        if self.partial_events == "dead_letter_only" and not self.deadletter_topic:
            raise _fail(s, "partial_events", "'dead_letter_only' needs a deadletter_topic")
        if not self.client_id:
            raise _fail(s, "client_id", "must not be empty")
        if not self.key:
            raise _fail(s, "key", "needs at least one field")
        for name in self.key:
            if name not in KEY_FIELDS:
                raise _fail(s, "key", f"unknown field {name!r}{_suggest(name, KEY_FIELDS)}")
        _positive(
            s,
            self,
            "batch_size_bytes",
            "max_request_size_bytes",
            "max_in_flight",
            "request_timeout_seconds",
            "connect_timeout_seconds",
            "delivery_timeout_seconds",
            "topic_partitions",
        )
        _non_negative(s, self, "linger_ms", "topic_replication_factor")
        password_sources = [
            k for k in ("sasl_password", "sasl_password_file", "sasl_password_env") if getattr(self, k)
        ]
        if len(password_sources) > 1:
            raise _fail(s, password_sources[1], f"set only one of {', '.join(password_sources)}")
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_username:
                raise _fail(
                    s, "sasl_username", f"required with security_protocol = {self.security_protocol!r}"
                )
            if not password_sources:
                raise _fail(
                    s,
                    "sasl_password_file",
                    f"security_protocol = {self.security_protocol!r} needs sasl_password_file, "
                    "sasl_password_env or sasl_password",
                )
        else:
            for key in ("sasl_username", *password_sources):
                if getattr(self, key):
                    raise _fail(
                        s, key, f"is set but security_protocol = {self.security_protocol!r} uses no SASL"
                    )
        if not self.security_protocol.endswith("SSL"):
            for key in (
                "ssl_cafile",
                "ssl_certfile",
                "ssl_keyfile",
                "ssl_key_password_file",
                "ssl_key_password_env",
            ):
                if getattr(self, key):
                    raise _fail(
                        s, key, f"is set but security_protocol = {self.security_protocol!r} uses no TLS"
                    )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise _fail(s, "ssl_keyfile", "needs ssl_certfile (the client certificate)")
        if self.ssl_key_password_file and self.ssl_key_password_env:
            raise _fail(
                s, "ssl_key_password_env", "set only one of ssl_key_password_file, ssl_key_password_env"
            )

    @property
    def configured(self) -> bool:
        """False when no broker is configured (the caller decides: error, or a local broker)."""
        return bool(self.bootstrap_servers)

    def sasl_password_value(self, env: Mapping[str, str] | None = None) -> str | None:
        """The SASL password, read now from its value, file or variable; None without SASL."""
        return _read_secret(
            self.sasl_password, self.sasl_password_file, self.sasl_password_env, "sasl_password", env
        )

    def ssl_key_password_value(self, env: Mapping[str, str] | None = None) -> str | None:
        return _read_secret(
            None, self.ssl_key_password_file, self.ssl_key_password_env, "ssl_key_password", env
        )

    def sink_options(self) -> dict[str, Any]:
        """The options in the key names of ``streamer.sinks.kafka.KafkaSinkConfig.from_mapping``.

        ``sasl_password`` (a literal value) has no counterpart there: that sink only reads secrets
        from a file or a variable, so the caller must pass it another way.
        """
        renamed = {
            "deadletter_topic": "dead_letter_topic",
            "key": "key_fields",
            "delivery_timeout_seconds": "retry_max_seconds",
        }
        skipped = {"acks", "sasl_password"}  # acks=all is what that sink always does
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in skipped or value is None:
                continue
            out[renamed.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else value
        return out


def _read_secret(
    value: Secret | None, path: str | None, env_name: str | None, what: str, env: Mapping[str, str] | None
) -> str | None:
    if value is not None:
        return value.reveal()
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read().rstrip("\r\n")
        except OSError as error:
            raise ConfigError(
                f"sinks.kafka.{what}_file = {path!r}: cannot read ({error.strerror or error})",
                key=f"sinks.kafka.{what}_file",
            ) from None
        if not text:
            raise ConfigError(
                f"sinks.kafka.{what}_file = {path!r}: file is empty", key=f"sinks.kafka.{what}_file"
            )
        return text
    if env_name:
        text = (os.environ if env is None else env).get(env_name, "")
        if not text:
            raise ConfigError(
                f"sinks.kafka.{what}_env = {env_name!r}: environment variable is unset or empty",
                key=f"sinks.kafka.{what}_env",
            )
        return text
    return None


def sink_config(options: KafkaConfig) -> KafkaSinkConfig:
    """The sink's view of [sinks.kafka], with a literal ``sasl_password`` carried over
    (``sink_options`` leaves it out: the sink takes no secret values from a mapping)."""
    from streamer.sinks.kafka import KafkaSinkConfig
    from streamer.sinks.kafka import Secret as SinkSecret

    literal = options.sasl_password
    return KafkaSinkConfig.from_mapping(
        options.sink_options(),
        "configuration",
        sasl_password=None if literal is None else SinkSecret(literal.reveal()),
    )


async def build(options: KafkaConfig, context: BuildContext) -> KafkaSink:
    from streamer.sinks.kafka import KafkaSink

    if not options.configured:
        raise ConfigError(
            "sinks.kafka.bootstrap_servers is not set: set OOMSTREAM_KAFKA_BOOTSTRAP, "
            "--sinks-kafka-bootstrap-servers or [sinks.kafka] bootstrap_servers (`make run` starts a "
            "local broker and sets it), or choose sinks.enabled = stdout|file",
            key="sinks.kafka.bootstrap_servers",
        )
    config = sink_config(options)
    # Shutdown must end in bounded time even with every broker gone: whatever is still unsent
    # then is reported failed, so the pipeline spools it and does not checkpoint past it. The
    # close waits twice (a last flush, then stopping the producer), each bounded by its share
    # of pipeline.shutdown_timeout_seconds (see run.sink_close_share).
    share = context.config.pipeline.shutdown_timeout_seconds * 0.2
    config = dataclasses.replace(config, close_timeout_seconds=min(config.close_timeout_seconds, share))
    return KafkaSink(config, on_delivery=context.on_delivery, registry=context.metrics.registry)


COMPONENT = Component(
    options=KafkaConfig, build=build, help="Apache Kafka (events and dead-letter topics)", spools=True
)
