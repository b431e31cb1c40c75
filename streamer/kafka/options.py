"""``KafkaOptions``: THE declaration of every Kafka option (connection, security, topics, producer).

One frozen dataclass; each field carries its default, its unit in its name and a help text in its
metadata (``help``; ``csv``: a comma-separated string is accepted as a list). The configuration
loader (streamer/config.py) derives the TOML keys, ``OOMSTREAM_*`` variables and ``--sinks-kafka-*``
flags of ``oomstream run``, ``publish`` and ``tail`` from these fields and converts values by their
types; this module only validates combinations. Fields whose metadata says ``option=False`` are not
options (``origin``: where the values came from, named in every error).

Secrets are never read here: ``sasl_password`` (a literal, masked) or ``sasl_password_file`` /
``sasl_password_env`` say where the password is; ``streamer.kafka.connection`` reads it when a
client is built and again at every (re)connection, so a rotated file takes effect without a
restart.

Imports nothing heavy: ``oomstream check-config`` and ``--help`` load this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from streamer.errors import ConfigError, SinkConfigError

Acks = Literal["all"]
Compression = Literal["zstd", "gzip", "lz4", "snappy", "none"]
PartialPolicy = Literal["both", "dead_letter_only"]
TopicPolicy = Literal["create", "check"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Event fields a Kafka record key can be taken from (the first one that is set wins); the getters
# are in streamer/sinks/kafka/records.py (a test keeps the two equal).
KEY_FIELDS = ("pod_uid", "container_id", "host", "boot_id", "oom_memcg", "task_memcg", "event_id")

# Which Python package each codec needs with aiokafka 0.14 (None: standard library).
COMPRESSION_PACKAGES: dict[str, str | None] = {
    "zstd": "cramjam",
    "lz4": "cramjam",
    "snappy": "cramjam",
    "gzip": None,
    "none": None,
}

MASK = "****"
_HOST_PORT = re.compile(r"\[?[\w.:-]+\]?:\d{1,5}")
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


class Secret:
    """A string that never shows itself in repr/str (config dumps, tracebacks, logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _opt(default: Any, help_text: str, *, csv: bool = False) -> Any:
    return field(default=default, metadata={"help": help_text, "csv": csv})


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """Every Kafka option of the service, ``publish``, ``tail`` and the Kafka inputs."""

    SECTION: ClassVar[str] = "kafka"

    # -- connection ------------------------------------------------------------------------------
    bootstrap_servers: tuple[str, ...] = _opt(
        (), "broker host:port list (or one comma-separated string); empty: not configured", csv=True
    )
    client_id: str = _opt("oomstream", "Kafka client id (broker logs, quotas)")
    request_timeout_seconds: float = _opt(30.0, "one produce/metadata request, at most")
    connect_timeout_seconds: float = _opt(10.0, "first connection to the cluster at start, at most")
    retry_backoff_ms: int = _opt(100, "the client's own pause before it retries a request")
    # -- security --------------------------------------------------------------------------------
    security_protocol: SecurityProtocol = _opt("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: SaslMechanism = _opt("PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    sasl_username: str | None = _opt(None, "SASL user name")
    sasl_password: Secret | None = _opt(
        None, "SASL password as a value (masked in output); prefer sasl_password_file or _env"
    )
    sasl_password_file: str | None = _opt(
        None, "file holding the SASL password, read at start and at every reconnection"
    )
    sasl_password_env: str | None = _opt(None, "environment variable holding the SASL password")
    ssl_cafile: str | None = _opt(None, "CA bundle to verify brokers; unset: the system CAs")
    ssl_certfile: str | None = _opt(None, "client certificate (PEM) for mutual TLS")
    ssl_keyfile: str | None = _opt(None, "client private key (PEM); unset: in ssl_certfile")
    ssl_key_password_file: str | None = _opt(None, "file holding the private key's password")
    ssl_key_password_env: str | None = _opt(None, "environment variable holding the private key's password")
    ssl_check_hostname: bool = _opt(True, "verify that broker certificates match their host names")
    # -- topics and records ----------------------------------------------------------------------
    events_topic: str = _opt("oomstream.events.v1", "topic for OOM events")
    dead_letter_topic: str = _opt(
        "oomstream.deadletter.v1", "topic for partial/unparseable reports with raw lines; empty: none"
    )
    key_fields: tuple[str, ...] = _opt(
        ("pod_uid", "container_id", "host"),
        "record key: the first of these event fields that is set (" + ", ".join(KEY_FIELDS) + ")",
        csv=True,
    )
    partial_events: PartialPolicy = _opt(
        "both", "partial reports: both (events topic + dead letter) or dead_letter_only"
    )
    producer_host: str | None = _opt(None, "producer_host header of every record; unset: the host name")
    topic_policy: TopicPolicy = _opt("create", "missing topics: create them, or check (fail at start)")
    topic_partitions: int = _opt(6, "partitions of topics this service creates")
    topic_replication_factor: int = _opt(0, "replication of topics it creates; 0: min(3, brokers)")
    # -- producer --------------------------------------------------------------------------------
    acks: Acks = _opt("all", "fixed: every in-sync replica must have an event before it counts as sent")
    compression: Compression = _opt("zstd", "record batch compression: zstd, gzip, lz4, snappy, none")
    linger_ms: int = _opt(5, "wait this long to fill a batch before sending")
    batch_size_bytes: int = _opt(262144, "maximum record batch size per partition")
    max_request_size_bytes: int = _opt(1048576, "largest produce request (and record) sent")
    max_in_flight: int = _opt(20000, "events submitted and not yet acknowledged, at most (backpressure)")
    delivery_timeout_seconds: float = _opt(
        120.0,
        "submit to final outcome, retries included: an event not acknowledged by then fails "
        "(the service spools it)",
    )
    retry_max_attempts: int = _opt(
        5, "resends of a record after a retriable error, at most (within delivery_timeout_seconds)"
    )
    retry_initial_backoff_seconds: float = _opt(0.5, "first pause before a resend; doubles each time")
    retry_max_backoff_seconds: float = _opt(10.0, "longest pause between resends")
    close_timeout_seconds: float = _opt(30.0, "at shutdown, wait this long for acknowledgements")
    # Not an option: where the values came from, named in errors ("oomstream.toml", "-o options").
    origin: str = field(default="", compare=False, metadata={"option": False})

    def __post_init__(self) -> None:
        for server in self.bootstrap_servers:
            if not _HOST_PORT.fullmatch(server.strip()):
                raise self.error("bootstrap_servers", f"{server!r} is not host:port")
        for key in ("events_topic", "dead_letter_topic"):
            topic = getattr(self, key)
            if (topic or key == "events_topic") and not TOPIC_NAME.fullmatch(topic):
                raise self.error(key, f"{topic!r} is not a valid topic name ([A-Za-z0-9._-], 1 to 249)")
        if self.partial_events == "dead_letter_only" and not self.dead_letter_topic:
            raise self.error("partial_events", "'dead_letter_only' needs a dead_letter_topic")
        if not self.client_id:
            raise self.error("client_id", "must not be empty")
        if not self.key_fields:
            raise self.error("key_fields", "needs at least one field")
        for name in self.key_fields:
            if name not in KEY_FIELDS:
                raise self.error(
                    "key_fields", f"unknown field {name!r} (choose from {', '.join(KEY_FIELDS)})"
                )
        for key in (
            "batch_size_bytes",
            "max_request_size_bytes",
            "max_in_flight",
            "request_timeout_seconds",
            "connect_timeout_seconds",
            "delivery_timeout_seconds",
            "retry_max_attempts",
            "retry_initial_backoff_seconds",
            "retry_max_backoff_seconds",
            "close_timeout_seconds",
            "topic_partitions",
        ):
            if getattr(self, key) <= 0:
                raise self.error(key, f"must be > 0, got {getattr(self, key)!r}")
        for key in ("linger_ms", "retry_backoff_ms", "topic_replication_factor"):
            if getattr(self, key) < 0:
                raise self.error(key, f"must be >= 0, got {getattr(self, key)!r}")
        self._check_security()

    def _check_security(self) -> None:
        protocol = self.security_protocol
        password_sources = [
            k for k in ("sasl_password", "sasl_password_file", "sasl_password_env") if getattr(self, k)
        ]
        if len(password_sources) > 1:
            raise self.error(password_sources[1], f"set only one of {', '.join(password_sources)}")
        if protocol.startswith("SASL_"):
            if not self.sasl_username:
                raise self.error("sasl_username", f"required with security_protocol = {protocol!r}")
            if not password_sources:
                raise self.error(
                    "sasl_password_file",
                    f"security_protocol = {protocol!r} needs sasl_password_file, sasl_password_env "
                    "or sasl_password",
                )
        else:
            for key in ("sasl_username", *password_sources):
                if getattr(self, key):
                    raise self.error(key, f"is set but security_protocol = {protocol!r} uses no SASL")
        if not protocol.endswith("SSL"):
            for key in (
                "ssl_cafile",
                "ssl_certfile",
                "ssl_keyfile",
                "ssl_key_password_file",
                "ssl_key_password_env",
            ):
                if getattr(self, key):
                    raise self.error(key, f"is set but security_protocol = {protocol!r} uses no TLS")
        # A certificate file may hold its key too; only a key without a certificate is an error.
        if self.ssl_keyfile and not self.ssl_certfile:
            raise self.error("ssl_keyfile", "needs ssl_certfile (the client certificate)")
        if self.ssl_key_password_file and self.ssl_key_password_env:
            raise self.error(
                "ssl_key_password_env", "set only one of ssl_key_password_file, ssl_key_password_env"
            )

    # -- helpers ---------------------------------------------------------------------------------
    def error(self, name: str, message: str) -> SinkConfigError:
        """An error naming the option (``kafka.<name>``), and where the values came from if known."""
        key = f"{self.SECTION}.{name}"
        where = f" (in {self.origin})" if self.origin else ""
        return SinkConfigError(f"{key}: {message}{where}", setting=name, key=key)

    def value_error(self, name: str, value: object, message: str) -> SinkConfigError:
        """``kafka.<name> = <value>: <message>``, for a value that is valid but does not work."""
        key = f"{self.SECTION}.{name}"
        where = f" (in {self.origin})" if self.origin else ""
        return SinkConfigError(f"{key} = {value!r}: {message}{where}", setting=name, key=key)

    def require_brokers(self) -> None:
        """Clients call this: an empty bootstrap list is 'not configured', fine for a config file."""
        if not self.bootstrap_servers:
            raise self.error("bootstrap_servers", "required")

    def sasl_password_value(self, env: Mapping[str, str] | None = None) -> str | None:
        """The SASL password, read now from its value, file or variable; None without SASL."""
        from streamer.kafka.connection import Credentials

        return Credentials(self, env).sasl_password()

    @property
    def configured(self) -> bool:
        """False when no broker is configured (the caller decides: error, or a local broker)."""
        return bool(self.bootstrap_servers)

    @property
    def topic_creation(self) -> bool:
        return self.topic_policy == "create"

    @property
    def servers(self) -> str:
        return ",".join(s.strip() for s in self.bootstrap_servers)

    @classmethod
    def from_mapping(
        cls, mapping: dict[str, Any], origin: str, *, from_strings: bool = False
    ) -> KafkaOptions:
        """Options from a mapping of option names (a TOML table, ``-o KEY=VALUE`` pairs), typed by
        the configuration loader's converter; literal secrets are refused (command lines and
        ad-hoc tables are readable by others: use ``*_file`` or ``*_env``)."""
        from streamer.config import section_from_mapping

        try:
            options: KafkaOptions = section_from_mapping(cls, mapping, origin, from_strings=from_strings)
        except SinkConfigError:
            raise
        except ConfigError as error:
            name = (error.key or "").rpartition(".")[2] or None
            raise SinkConfigError(str(error), setting=name, key=error.key) from None
        options.require_brokers()
        return options

    @classmethod
    def from_strings(cls, pairs: list[str], origin: str, base: dict[str, Any] | None = None) -> KafkaOptions:
        """``KEY=VALUE`` strings (``-o``) on top of ``base``."""
        values: dict[str, Any] = dict(base or {})
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise SinkConfigError(f"{pair!r} in {origin}: expected KEY=VALUE", setting=key)
            values[key] = raw
        return cls.from_mapping(values, origin, from_strings=True)
