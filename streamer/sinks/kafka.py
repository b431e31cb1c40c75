"""Kafka sink: idempotent, acks=all, compressed, bounded in flight, with a dead-letter topic.

Delivery model
    ``submit`` serializes the event, waits only while ``max_in_flight`` events are unacknowledged,
    appends the record to an open batch for its topic-partition (aiokafka's own batch builder) and
    returns. A batch goes to the idempotent ``AIOKafkaProducer`` (``send_batch``) when it is full
    (``batch_size_bytes``) or ``linger_ms`` after its first record; when the broker acknowledges it,
    the delivery callback receives one ``DeliveryResult`` per event, with its positions.
    Partitioning is Kafka's default (murmur2 of the key, as the Java client does), so a pod's
    events share one partition and keep their order.

Errors
    aiokafka itself retries retriable produce errors of an idempotent producer until they succeed;
    what reaches us is a batch that expired (no leader for ``request_timeout_seconds``), a full
    buffer, a connection that never came back, or a refusal. Retriable ones are resent with
    exponential backoff (tenacity), bounded by ``retry_max_attempts`` and ``retry_max_seconds``,
    and counted; if they stay unresolved the result is FAILED (the pipeline keeps the positions and
    can spool). Fatal ones (authorization, record too large, unknown topic with creation off) send a
    dead-letter record with the reason instead, and the pipeline goes on. Errors that mean the
    idempotent producer's sequence state is broken (OutOfOrderSequenceNumber, UnknownProducerId,
    InvalidProducerEpoch) make the sink replace its producer (new producer id) and resend.
    A resend can reorder a key's events and, after a broker crash, duplicate one; consumers dedupe
    by ``event_id`` (deterministic), which is also sent as a header.

Partial events (``event.partial``)
    Default ``partial_events="both"``: the event goes to the events topic (an OOM kill happened and
    consumers should see it, flagged partial) AND a dead-letter record carrying the raw lines and the
    reason goes to the dead-letter topic (so the report can be reparsed once the parser improves).
    The positions are acknowledged only when both are. ``"dead_letter_only"`` sends just the
    dead letter.

Compression libraries (aiokafka 0.14 reads them through ``cramjam`` only, see aiokafka/codec.py):
    zstd, lz4 and snappy need ``cramjam``; gzip uses the standard library. ``zstandard`` and
    ``python-snappy``/``lz4`` are not used by aiokafka 0.14.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import os
import random
import re
import ssl
import time
import types
from collections import Counter as TallyCounter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from prometheus_client import CollectorRegistry
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from parsers.events import SCHEMA_VERSION, AnyEvent, K8sEvent, OomEvent, event_to_json
from streamer.logging_setup import RateLimiter
from streamer.sinks.base import (
    DEAD_LETTER_TYPE,
    DEAD_LETTER_VERSION,
    REASON_PARTIAL_REPORT,
    DeadLetter,
    DeliveryCallback,
    DeliveryResult,
    DeliveryStatus,
    FatalSinkError,
    RetriableSinkError,
    Sink,
    SinkClosedError,
    SinkConfigError,
    dead_letter_to_json,
    producer_host,
)

log = logging.getLogger("oomstream.sinks.kafka")

Compression = Literal["zstd", "gzip", "lz4", "snappy", "none"]
TopicPolicy = Literal["create", "check"]
PartialPolicy = Literal["both", "dead_letter_only"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Which Python package each codec needs with aiokafka 0.14 (None: standard library).
COMPRESSION_PACKAGES: dict[str, str | None] = {
    "zstd": "cramjam",
    "lz4": "cramjam",
    "snappy": "cramjam",
    "gzip": None,
    "none": None,
}


def _pod_uid(event: AnyEvent) -> str | None:
    if isinstance(event, OomEvent):
        return event.cgroup.pod_uid
    if isinstance(event, K8sEvent):
        return event.pod_uid
    return (event.kubernetes or {}).get("pod_uid")


def _container_id(event: AnyEvent) -> str | None:
    if isinstance(event, OomEvent):
        return event.cgroup.container_id
    if isinstance(event, K8sEvent):
        return event.container_id
    return (event.kubernetes or {}).get("container_id")


# Kubernetes signals and incidents have no kernel facts: those getters give None and the chain
# moves on (to host), so every signal of one pod still lands on that pod's partition.
KEY_GETTERS: dict[str, Callable[[AnyEvent], str | None]] = {
    "pod_uid": _pod_uid,
    "container_id": _container_id,
    "host": lambda e: e.host,
    "boot_id": lambda e: e.boot_id if isinstance(e, OomEvent) else None,
    "oom_memcg": lambda e: e.cgroup.oom_memcg if isinstance(e, OomEvent) else None,
    "task_memcg": lambda e: e.cgroup.task_memcg if isinstance(e, OomEvent) else None,
    "event_id": lambda e: e.event_id,
}

CONTENT_TYPE = b"application/json"
PARTITIONS_REFRESH_SECONDS = 30.0
# Keys that would hold a secret value; the error points at the _file/_env alternatives.
SECRET_KEYS = {
    "sasl_password": "sasl_password",
    "ssl_key_password": "ssl_key_password",
    "password": "sasl_password",
}


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaSinkConfig:
    """Everything the Kafka sink (and ``oomstream tail``) needs; units are in the names.

    Secrets are never values here: ``*_password_file`` / ``*_password_env`` name where to read
    them at start, so a repr or a config dump cannot leak them.
    """

    bootstrap_servers: tuple[str, ...]
    events_topic: str = "oomstream.events.v1"
    dead_letter_topic: str = "oomstream.deadletter.v1"
    partial_events: PartialPolicy = "both"
    key_fields: tuple[str, ...] = ("pod_uid", "container_id", "host")
    client_id: str = "oomstream"
    producer_host: str | None = None  # header value; default: this machine's host name
    compression: Compression = "zstd"
    linger_ms: int = 5
    batch_size_bytes: int = 256 * 1024
    max_request_size_bytes: int = 1024 * 1024
    max_in_flight: int = 20_000
    request_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    retry_backoff_ms: int = 100  # aiokafka's own backoff between internal retries
    retry_max_attempts: int = 5  # our resends after aiokafka gave up on a record
    retry_max_seconds: float = 120.0
    retry_initial_backoff_seconds: float = 0.5
    retry_max_backoff_seconds: float = 10.0
    close_timeout_seconds: float = 30.0
    topic_policy: TopicPolicy = "create"
    topic_partitions: int = 6
    topic_replication_factor: int = 0  # 0: min(3, number of brokers)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password_file: str | None = None
    sasl_password_env: str | None = None
    # A literal password from the service's own config (kafka.sasl_password); never accepted from
    # a mapping (see SECRET_KEYS), only set by the caller that holds it.
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password_file: str | None = None
    ssl_key_password_env: str | None = None
    ssl_check_hostname: bool = True
    origin: str = field(default="kafka sink config", compare=False)  # named in every error message

    def __post_init__(self) -> None:
        def bad(key: str, message: str) -> SinkConfigError:
            return SinkConfigError(f"{key}: {message} (in {self.origin})", setting=key)

        if not self.bootstrap_servers or not all(s.strip() for s in self.bootstrap_servers):
            raise bad("bootstrap_servers", "no broker address given (host:port, comma separated)")
        for server in self.bootstrap_servers:
            if not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", server.strip()):
                raise bad("bootstrap_servers", f"{server!r} is not host:port")
        if not self.events_topic:
            raise bad("events_topic", "must not be empty")
        for key in ("events_topic", "dead_letter_topic"):
            topic = getattr(self, key)
            if topic and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
                raise bad(key, f"{topic!r} is not a valid Kafka topic name ([A-Za-z0-9._-], at most 249)")
        if self.partial_events == "dead_letter_only" and not self.dead_letter_topic:
            raise bad("partial_events", "'dead_letter_only' needs a dead_letter_topic")
        for name in self.key_fields:
            if name not in KEY_GETTERS:
                raise bad("key_fields", f"unknown field {name!r} (choose from {', '.join(KEY_GETTERS)})")
        positive = (
            "batch_size_bytes",
            "max_request_size_bytes",
            "max_in_flight",
            "request_timeout_seconds",
            "connect_timeout_seconds",
            "retry_max_attempts",
            "retry_max_seconds",
            "retry_initial_backoff_seconds",
            "retry_max_backoff_seconds",
            "close_timeout_seconds",
            "topic_partitions",
        )
        for key in positive:
            if getattr(self, key) <= 0:
                raise bad(key, f"must be > 0, got {getattr(self, key)!r}")
        for key in ("linger_ms", "retry_backoff_ms", "topic_replication_factor"):
            if getattr(self, key) < 0:
                raise bad(key, f"must be >= 0, got {getattr(self, key)!r}")
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl:
            if not self.sasl_username:
                raise bad("sasl_username", f"required with security_protocol={self.security_protocol!r}")
            if not (self.sasl_password_file or self.sasl_password_env or self.sasl_password):
                raise bad(
                    "sasl_password_file",
                    f"security_protocol={self.security_protocol!r} needs sasl_password_file or "
                    "sasl_password_env",
                )
        else:
            for key in ("sasl_username", "sasl_password_file", "sasl_password_env", "sasl_password"):
                if getattr(self, key):
                    raise bad(key, f"is set but security_protocol={self.security_protocol!r} uses no SASL")
        if not tls:
            for key in (
                "ssl_cafile",
                "ssl_certfile",
                "ssl_keyfile",
                "ssl_key_password_file",
                "ssl_key_password_env",
            ):
                if getattr(self, key):
                    raise bad(key, f"is set but security_protocol={self.security_protocol!r} uses no TLS")
        # A certificate file may hold its key too; only a key without a certificate is an error.
        if self.ssl_keyfile and not self.ssl_certfile:
            raise bad("ssl_keyfile", "needs ssl_certfile (the client certificate)")

    @property
    def topic_creation(self) -> bool:
        return self.topic_policy == "create"

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], source_name: str, *, sasl_password: Secret | None = None
    ) -> KafkaSinkConfig:
        """Build from a TOML table / dict; unknown keys, wrong types and literal secrets are errors.
        ``sasl_password``: a literal the caller already holds as a secret (the service config's)."""
        specs = _field_specs()
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            _check_key(key, specs, source_name)
            values[key] = _coerce(key, value, specs[key], source_name, from_string=False)
        if "bootstrap_servers" not in values:
            raise SinkConfigError(
                f"bootstrap_servers: required (in {source_name})", setting="bootstrap_servers"
            )
        return cls(**values, origin=source_name, sasl_password=sasl_password)

    @classmethod
    def from_strings(
        cls, pairs: Sequence[str], source_name: str, base: Mapping[str, Any] | None = None
    ) -> KafkaSinkConfig:
        """``KEY=VALUE`` strings (command-line ``-o``) on top of ``base``; values typed by field."""
        specs = _field_specs()
        values: dict[str, Any] = dict(base or {})
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise SinkConfigError(f"{pair!r} in {source_name}: expected KEY=VALUE", setting=key)
            _check_key(key, specs, source_name)
            values[key] = _coerce(key, raw, specs[key], source_name, from_string=True)
        return cls.from_mapping(values, source_name)


def _check_key(key: str, specs: Mapping[str, Any], source_name: str) -> None:
    if key in SECRET_KEYS:
        target = SECRET_KEYS[key]
        raise SinkConfigError(
            f"{key}: secrets are not accepted as values (in {source_name}); put it in a file "
            f"({target}_file) or an environment variable ({target}_env)",
            setting=key,
        )
    if key not in specs or key == "origin":
        close = difflib.get_close_matches(key, [k for k in specs if k != "origin"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SinkConfigError(f"unknown key {key!r} in {source_name}{hint}", setting=key)


def _field_specs() -> dict[str, Any]:
    hints = get_type_hints(KafkaSinkConfig)
    return {f.name: hints[f.name] for f in fields(KafkaSinkConfig)}


def _coerce(key: str, value: Any, spec: Any, source: str, *, from_string: bool) -> Any:
    def bad(expected: str) -> SinkConfigError:
        return SinkConfigError(
            f"{key}: expected {expected}, got {value!r} (in {source})",
            setting=key,
        )

    origin = get_origin(spec)
    args = get_args(spec)
    if origin in (Union, types.UnionType) and type(None) in args:
        if value is None or (from_string and value in ("", "none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0], source, from_string=from_string)
    if origin is Literal:
        if value not in args:
            raise bad("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin is tuple:
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            items = [v.strip() for v in value]
        else:
            raise bad("a list of strings or a comma-separated string")
        return tuple(items)
    if spec is bool:
        if isinstance(value, bool):
            return value
        words = ("true", "false", "1", "0", "yes", "no")
        if from_string and isinstance(value, str) and value.lower() in words:
            return value.lower() in ("true", "1", "yes")
        raise bad("true or false")
    if spec is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise bad("an integer")
    if spec is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_string and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if spec is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    raise bad(str(spec))  # pragma: no cover - every field type is handled above


class Secret:
    """A string that never shows itself in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def read_secret(
    config: KafkaSinkConfig, file_key: str, env_key: str, environ: Mapping[str, str] | None = None
) -> Secret | None:
    """The secret from the file named by ``file_key`` or the variable named by ``env_key``."""
    path: str | None = getattr(config, file_key)
    env_name: str | None = getattr(config, env_key)
    environ = os.environ if environ is None else environ
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().rstrip("\r\n")
        except OSError as error:
            raise SinkConfigError(
                f"{file_key}={path!r}: cannot read ({error.strerror or error}) (in {config.origin})",
                setting=file_key,
            ) from None
        if not value:
            raise SinkConfigError(
                f"{file_key}={path!r}: file is empty (in {config.origin})", setting=file_key
            )
        return Secret(value)
    if env_name:
        value = environ.get(env_name, "")
        if not value:
            raise SinkConfigError(
                f"{env_key}={env_name!r}: environment variable is unset or empty (in {config.origin})",
                setting=env_key,
            )
        return Secret(value)
    return None


def connection_kwargs(config: KafkaSinkConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka client arguments for bootstrap, client id and security (producer, consumer, admin).

    The result holds the plain password: pass it to aiokafka, never log it.
    """
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in config.bootstrap_servers],
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": int(config.request_timeout_seconds * 1000),
        "retry_backoff_ms": config.retry_backoff_ms,
    }
    if config.security_protocol.startswith("SASL_"):
        password = config.sasl_password or read_secret(
            config, "sasl_password_file", "sasl_password_env", environ
        )
        assert password is not None  # __post_init__ requires a source
        kwargs["sasl_mechanism"] = config.sasl_mechanism
        kwargs["sasl_plain_username"] = config.sasl_username
        kwargs["sasl_plain_password"] = password.reveal()
    if config.security_protocol.endswith("SSL"):
        key_password = read_secret(config, "ssl_key_password_file", "ssl_key_password_env", environ)
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ssl_cafile)
            if config.ssl_certfile:
                context.load_cert_chain(
                    config.ssl_certfile,
                    config.ssl_keyfile,
                    password=key_password.reveal() if key_password else None,
                )
        except (OSError, ssl.SSLError) as error:
            setting = "ssl_certfile" if config.ssl_certfile else "ssl_cafile"
            raise SinkConfigError(
                f"TLS setup failed ({setting}, ssl_keyfile, ssl_cafile in {config.origin}): {error}",
                setting=setting,
            ) from None
        context.check_hostname = config.ssl_check_hostname
        if not config.ssl_check_hostname:
            context.verify_mode = ssl.CERT_REQUIRED  # still verify the chain, only not the name
        kwargs["ssl_context"] = context
    return kwargs


# -- error classification --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorClass:
    retriable: bool
    reason: str  # metric label and DeliveryResult.reason
    reset_producer: bool = False  # the idempotent producer's sequence state is broken


_FATAL_REASONS = {
    "MessageSizeTooLargeError": "message_too_large",
    "RecordTooLargeError": "message_too_large",
    "RecordListTooLargeError": "message_too_large",
    "TopicAuthorizationFailedError": "authorization_failed",
    "ClusterAuthorizationFailedError": "authorization_failed",
    "GroupAuthorizationFailedError": "authorization_failed",
    "TransactionalIdAuthorizationFailed": "authorization_failed",
    "SaslAuthenticationFailed": "authentication_failed",
    "AuthenticationFailedError": "authentication_failed",
    "AuthenticationMethodNotSupported": "authentication_failed",
    "UnsupportedSaslMechanismError": "authentication_failed",
    "IllegalSaslStateError": "authentication_failed",
    "InvalidTopicError": "invalid_topic",
    "CorruptRecordException": "rejected_by_broker",
    "InvalidRequestError": "rejected_by_broker",
    "InvalidTimestampError": "rejected_by_broker",
    "PolicyViolationError": "rejected_by_broker",
    "UnsupportedVersionError": "rejected_by_broker",
    "UnsupportedForMessageFormatError": "rejected_by_broker",
    "UnsupportedCodecError": "rejected_by_broker",
}
_RETRIABLE_REASONS = {
    "KafkaConnectionError": "connection_error",
    "NodeNotReadyError": "connection_error",
    "NoBrokersAvailable": "connection_error",
    "RequestTimedOutError": "request_timed_out",
    "KafkaTimeoutError": "timeout",
    "TimeoutError": "timeout",
    "NotLeaderForPartitionError": "not_leader_for_partition",
    "LeaderNotAvailableError": "leader_not_available",
    "NotEnoughReplicasError": "not_enough_replicas",
    "NotEnoughReplicasAfterAppendError": "not_enough_replicas",
    "KafkaStorageError": "broker_storage_error",
    "ProducerClosed": "producer_closed",
}
_RESET_REASONS = {
    "OutOfOrderSequenceNumber": "producer_state",
    "UnknownProducerId": "producer_state",
    "InvalidProducerEpoch": "producer_state",
    "ProducerFenced": "producer_state",
}


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _BatchTooLarge(Exception):
    """A batch of several records was refused as too large: resend the record in a batch of its own."""


def _is_too_large(error: BaseException) -> bool:
    return classify_kafka_error(error).reason == "message_too_large"


def classify_kafka_error(error: BaseException, *, topic_creation: bool = True) -> ErrorClass:
    """Retriable (resend with backoff) or fatal (dead-letter), with a short reason."""
    if isinstance(error, _BatchTooLarge):
        return ErrorClass(True, "batch_too_large")
    names = [klass.__name__ for klass in type(error).__mro__]
    for name in names:
        if name == "UnknownTopicOrPartitionError":
            # With topic creation on, the topic may be (re)created; with it off, resending cannot help.
            return ErrorClass(topic_creation, "unknown_topic")
        if name in _RESET_REASONS:
            return ErrorClass(True, _RESET_REASONS[name], reset_producer=True)
        if name in _FATAL_REASONS:
            return ErrorClass(False, _FATAL_REASONS[name])
        if name in _RETRIABLE_REASONS:
            return ErrorClass(True, _RETRIABLE_REASONS[name])
    if "KafkaError" in names:
        return ErrorClass(bool(getattr(error, "retriable", False)), _snake(type(error).__name__))
    if isinstance(error, OSError):
        return ErrorClass(True, "connection_error")
    return ErrorClass(False, "internal_error")


def select_key(event: AnyEvent, key_fields: Sequence[str]) -> bytes | None:
    """The first present field of the chain; None (any partition) when none is."""
    for name in key_fields:
        value = KEY_GETTERS[name](event)
        if value:
            return value.encode("utf-8", "surrogateescape")
    return None


def event_headers(
    event_id: str | None,
    host: bytes,
    *,
    dead_letter_reason: str | None = None,
    event_type: str = "oom_kill",
) -> list[tuple[str, bytes]]:
    if dead_letter_reason is None:
        headers = [
            ("schema_version", str(SCHEMA_VERSION).encode()),
            ("event_type", event_type.encode()),
        ]
    else:
        headers = [
            ("schema_version", str(DEAD_LETTER_VERSION).encode()),
            ("event_type", DEAD_LETTER_TYPE.encode()),
            ("dead_letter_reason", dead_letter_reason.encode()),
        ]
    headers.append(("content_type", CONTENT_TYPE))
    headers.append(("producer_host", host))
    if event_id is not None:
        headers.append(("event_id", event_id.encode()))
    return headers


# -- the sink --------------------------------------------------------------------------------------


class _Unit:
    """One submitted event or dead letter: one or two records, one DeliveryResult."""

    __slots__ = (
        "dead_lettered",
        "event",
        "event_id",
        "failure",
        "finished",
        "letter_reason",
        "metadata",
        "positions",
        "refusal",
        "remaining",
        "started",
    )

    def __init__(self, event: AnyEvent | None, event_id: str | None, positions: tuple[object, ...]) -> None:
        self.event = event
        self.event_id = event_id
        self.positions = positions
        self.started = 0.0  # set when it gets its in-flight slot
        self.remaining = 0
        self.finished = False
        self.failure: tuple[str, str] | None = None  # (reason, error): not written anywhere
        self.refusal: tuple[str, str] | None = None  # (reason, error): events topic refused it for good
        self.letter_reason: str | None = None  # dead-letter-only unit: its reason
        self.dead_lettered = False
        self.metadata: tuple[str, int, int] | None = None  # topic, partition, offset of the main record


class _Record:
    __slots__ = (
        "dead_letter_reason",
        "generation",
        "headers",
        "isolated",
        "key",
        "reset_pending",
        "topic",
        "unit",
        "value",
        "waiter",
    )

    def __init__(
        self,
        unit: _Unit,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        dead_letter_reason: str | None,
    ) -> None:
        self.unit = unit
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.dead_letter_reason = dead_letter_reason
        self.generation = 0
        self.reset_pending = False
        self.isolated = False  # send in a batch of its own (its batch was refused as too large)
        self.waiter: asyncio.Future[tuple[str, int, int]] | None = None  # set while a resend awaits it


class _Batch:
    """Records being collected for one topic-partition, in aiokafka's own batch builder."""

    __slots__ = ("builder", "partition", "records", "timer", "topic")

    def __init__(self, builder: Any, topic: str, partition: int) -> None:
        self.builder = builder
        self.topic = topic
        self.partition = partition
        self.records: list[_Record] = []
        self.timer: asyncio.Handle | None = None


class _Partitioner:
    """Kafka's default keyed partitioning (murmur2, as the Java client), with the hash cached.

    aiokafka's murmur2 is pure Python and costs more than the rest of a send; keys repeat (one pod
    sends many events), so the hash is computed once per key.
    """

    def __init__(self, max_keys: int = 65_536) -> None:
        from aiokafka.partitioner import murmur2

        self._murmur2 = murmur2
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, partitions: int) -> int:
        if key is None:
            return random.randrange(partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = self._murmur2(key) & 0x7FFFFFFF
        return hashed % partitions


class _LogLimiter:
    """At most one log line per reason per interval, with the count of what was suppressed.

    The sink limits its own lines because ``oomstream publish`` installs no logging handler (so no
    ``RateLimitFilter``); the counting is ``logging_setup.RateLimiter``'s.
    """

    def __init__(self, interval_seconds: float = 10.0) -> None:
        self._limiter = RateLimiter(interval_seconds)

    def warning(self, reason: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, reason, message, *args)

    def log(self, level: int, reason: str, message: str, *args: object) -> None:
        suppressed = self._limiter.check(reason)
        if suppressed is None:
            return
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        log.log(level, message, *args)


ProducerFactory = Callable[[dict[str, Any]], Any]
T = TypeVar("T")


class KafkaSink(Sink):
    """Publishes events to Kafka; see the module docstring for the delivery model."""

    def __init__(
        self,
        config: KafkaSinkConfig,
        *,
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
        name: str = "kafka",
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        super().__init__(name=name, on_delivery=on_delivery, registry=registry)
        self.config = config
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._generation = 0
        self._conn: dict[str, Any] = {}
        # The in-flight bound: _units holds every unacknowledged submission; a full set makes submit
        # wait on _room (a plain counter check per event is cheaper than a semaphore).
        self._max_in_flight = config.max_in_flight
        self._room = asyncio.Event()
        self._units: set[_Unit] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reset_lock = asyncio.Lock()
        self._started = False
        self._closing = False
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        self._host = (config.producer_host or producer_host()).encode("utf-8", "surrogateescape")
        self._limiter = _LogLimiter()
        self._m_sent = self.metrics.events_sent.labels(name, config.events_topic)
        self._m_in_flight.set_function(lambda: len(self._units))  # read at scrape time: no per-event cost
        self._partitioner = _Partitioner()
        self._partition_counts: dict[str, int] = {}
        self._partitions_checked: dict[str, float] = {}
        self._open: dict[tuple[str, int], _Batch] = {}
        self._partition_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._linger_seconds = config.linger_ms / 1000
        # Per-event work is kept small: the constant headers and the key chain are prepared once.
        self._header_prefix = event_headers(None, self._host)
        self._key_getters = [KEY_GETTERS[name] for name in config.key_fields]
        self._yield_due = False
        # Leave room for the envelope's record overhead (key, headers, batch header).
        self._dead_letter_max_bytes = max(1024, config.max_request_size_bytes - 16 * 1024)
        # What the record size bound left out of dead letters (README "Bounds and what happens at them").
        self.bounds: TallyCounter[str] = TallyCounter()

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._units)

    async def start(self) -> None:
        if self._started:
            return
        if self._closed:
            raise SinkClosedError(f"{self.name} sink: start after close")
        config = self.config
        package = COMPRESSION_PACKAGES[config.compression]
        if package is not None and not _codec_available(config.compression):
            raise SinkConfigError(
                f"compression={config.compression!r} needs the Python package {package!r} "
                f"(pip install {package}) (in {config.origin})",
                setting="compression",
            )
        self._conn = connection_kwargs(config)
        if self._producer_factory is None:
            await self._prepare_topics()
        producer = self._make_producer()
        await self._bounded(producer.start(), "producer start", stop=producer.stop)
        self._producer = producer
        for topic in (config.events_topic, config.dead_letter_topic):
            if topic:
                await self._bounded(self._refresh_partitions(topic), f"metadata of topic {topic!r}")
        self._started = True
        self._watchdog = asyncio.get_running_loop().create_task(self._expire_overdue())

    async def flush(self, timeout_seconds: float | None = None) -> None:
        # Lingering batches would go out anyway; this makes flush not wait linger_ms for them.
        for batch in list(self._open.values()):
            self._send_batch(batch)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_seconds)
        except TimeoutError:
            raise RetriableSinkError(
                f"{self.name} sink: {len(self._units)} event(s) still unacknowledged after "
                f"{timeout_seconds}s (brokers {','.join(self.config.bootstrap_servers)})"
            ) from None

    async def _expire_overdue(self) -> None:
        """Fail what the broker has not acknowledged within the retry budget.

        With every broker gone, aiokafka can keep a batch queued for a node that never becomes
        ready, without an error to retry on; the pipeline must still learn that the event is not
        delivered (it then goes to the spool) instead of waiting for ever.
        """
        budget = self.config.retry_max_seconds + 2 * self.config.request_timeout_seconds
        while True:
            await asyncio.sleep(min(1.0, budget / 4))
            now = time.perf_counter()
            for unit in [unit for unit in self._units if now - unit.started > budget]:
                self._fail_unit(
                    unit, "delivery_timeout", f"not acknowledged within {budget:.0f} s (retries included)"
                )

    async def close(self) -> None:
        if self._closed:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
        try:
            if self._started:
                await self.flush(self.config.close_timeout_seconds)
        except RetriableSinkError as error:
            log.warning("%s", error)
        finally:
            self._closing = True
            self._closed = True
            for batch in list(self._open.values()):
                if batch.timer is not None:
                    batch.timer.cancel()
                for record in batch.records:
                    self._record_failed(record, "closed", "sink closed before the record was sent")
            self._open.clear()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            for unit in list(self._units):
                self._fail_unit(unit, "closed", "sink closed before the broker acknowledged")
            if self._producer is not None:
                await self._stop_producer(self._producer)
                self._producer = None

    # -- submission ---------------------------------------------------------------------------------
    async def submit(self, event: AnyEvent, positions: Sequence[object] = ()) -> None:
        if not self._started or self._closing:
            self._check_open()
        event_id = event.event_id
        unit = _Unit(event, event_id, tuple(positions))
        key: bytes | None = None
        for getter in self._key_getters:
            value = getter(event)
            if value:
                key = value.encode("utf-8", "surrogateescape")
                break
        records: list[_Record] = []
        partial = isinstance(event, OomEvent) and event.partial
        if not (partial and self.config.partial_events == "dead_letter_only"):
            if event.type == "oom_kill":
                headers = [*self._header_prefix, ("event_id", event_id.encode())]
            else:
                headers = event_headers(event_id, self._host, event_type=event.type)
            records.append(_Record(unit, self.config.events_topic, key, event_to_json(event), headers, None))
        else:
            unit.letter_reason = REASON_PARTIAL_REPORT
        if isinstance(event, OomEvent) and event.partial and self.config.dead_letter_topic:
            letter = DeadLetter.from_event(event, REASON_PARTIAL_REPORT, event.partial_reason)
            records.append(self._dead_letter_record(unit, letter, key))
        if len(self._units) >= self._max_in_flight:
            await self._wait_for_room()
        self._dispatch(unit, records)
        if self._yield_due:
            # A full batch went out: let the sender run even if the caller never waits.
            self._yield_due = False
            await asyncio.sleep(0)

    async def submit_dead_letter(self, letter: DeadLetter, positions: Sequence[object] = ()) -> None:
        self._check_open()
        if not self.config.dead_letter_topic:
            raise FatalSinkError(
                f"dead_letter_topic is empty (in {self.config.origin}): nowhere to send {letter.reason!r}",
                setting="dead_letter_topic",
            )
        unit = _Unit(letter.event, letter.event_id, tuple(positions))
        unit.letter_reason = letter.reason
        key = select_key(letter.event, self.config.key_fields) if letter.event is not None else None
        if key is None and letter.host:
            key = letter.host.encode("utf-8", "surrogateescape")
        record = self._dead_letter_record(unit, letter, key)
        if len(self._units) >= self._max_in_flight:
            await self._wait_for_room()
        self._dispatch(unit, [record])

    def _dead_letter_record(self, unit: _Unit, letter: DeadLetter, key: bytes | None) -> _Record:
        value = dead_letter_to_json(
            letter,
            producer=self._host.decode("utf-8", "surrogateescape"),
            max_bytes=self._dead_letter_max_bytes,
            counts=self.bounds,
        )
        headers = event_headers(letter.event_id, self._host, dead_letter_reason=letter.reason)
        return _Record(unit, self.config.dead_letter_topic, key, value, headers, letter.reason)

    async def _wait_for_room(self) -> None:
        while len(self._units) >= self._max_in_flight:
            self._room.clear()
            await self._room.wait()
            if self._closing:
                self._check_open()

    def _dispatch(self, unit: _Unit, records: list[_Record]) -> None:
        unit.started = time.perf_counter()  # latency excludes the wait for an in-flight slot
        unit.remaining = len(records)
        self._units.add(unit)
        self._idle.clear()
        for record in records:
            self._enqueue(record)

    def _check_open(self) -> None:
        if not self._started or self._closing:
            state = "not started" if not self._started else "closed"
            raise SinkClosedError(f"{self.name} sink: submit while {state}")

    # -- batching -----------------------------------------------------------------------------------
    # Records are appended to aiokafka's own batch builders (one open batch per topic-partition),
    # and each full or lingered batch goes to ``producer.send_batch``: per record this costs one
    # C-level append instead of a ``send()`` coroutine, a pure-Python murmur2 and a future. The
    # producer underneath is the same idempotent acks=all one, with its retries and ordering.

    def _enqueue(self, record: _Record) -> None:
        size = len(record.value) + (len(record.key) if record.key else 0) + 64 * len(record.headers)
        if size > self.config.max_request_size_bytes:
            # aiokafka's send() refuses these before sending; batches need the same check here.
            from aiokafka.errors import MessageSizeTooLargeError

            self._on_error(
                record,
                MessageSizeTooLargeError(
                    f"the record is about {size} bytes, more than max_request_size_bytes="
                    f"{self.config.max_request_size_bytes}"
                ),
            )
            return
        partitions = self._partition_counts.get(record.topic)
        if partitions is None:
            self._spawn(self._enqueue_after_metadata(record))
            return
        partition = self._partitioner(record.key, partitions)
        if record.isolated:
            batch = _Batch(self._producer.create_batch(), record.topic, partition)
            self._append(batch, record)
            self._send_batch(batch)
            return
        tp = (record.topic, partition)
        opened = self._open.get(tp)
        batch = opened if opened is not None else self._open_batch(record.topic, partition)
        if not self._append(batch, record):
            self._send_batch(batch)  # full
            batch = self._open_batch(record.topic, partition)
            self._append(batch, record)  # an empty batch takes any record

    @staticmethod
    def _append(batch: _Batch, record: _Record) -> bool:
        metadata = batch.builder.append(
            timestamp=None, key=record.key, value=record.value, headers=record.headers
        )
        if metadata is None:
            return False
        batch.records.append(record)
        return True

    def _open_batch(self, topic: str, partition: int) -> _Batch:
        batch = _Batch(self._producer.create_batch(), topic, partition)
        self._open[(topic, partition)] = batch
        loop = asyncio.get_running_loop()
        if self._linger_seconds > 0:
            batch.timer = loop.call_later(self._linger_seconds, self._send_batch, batch)
        else:
            batch.timer = loop.call_soon(self._send_batch, batch)  # what arrives in this tick goes along
        return batch

    def _send_batch(self, batch: _Batch) -> None:
        if self._open.get((batch.topic, batch.partition)) is batch:
            del self._open[(batch.topic, batch.partition)]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if not batch.records:
            return
        batch.builder.close()
        self._yield_due = True
        self._spawn(self._deliver_batch(batch))

    async def _deliver_batch(self, batch: _Batch) -> None:
        records = batch.records
        generation = self._generation
        for record in records:
            record.generation = generation
        tp = (batch.topic, batch.partition)
        lock = self._partition_locks.get(tp)
        if lock is None:
            lock = self._partition_locks[tp] = asyncio.Lock()
        try:
            # FIFO lock: batches of one partition enter aiokafka's queue in the order they were made.
            async with lock:
                future = await self._producer.send_batch(
                    batch.builder, batch.topic, partition=batch.partition
                )
            metadata = await future
        except asyncio.CancelledError:
            for record in records:
                self._record_failed(record, "closed", "sink closed before the broker acknowledged")
            raise
        except Exception as error:
            for record in records:
                if len(records) > 1 and _is_too_large(error):
                    # The broker refused the batch, not necessarily each record: resend them alone.
                    record.isolated = True
                    self._enqueue_retry(record, error)
                else:
                    self._deliver_error(record, error)
            return
        base = int(metadata.offset)
        partition = int(metadata.partition)
        for index, record in enumerate(records):
            self._deliver_ok(record, (batch.topic, partition, base + index))
        self._m_sent.inc(sum(1 for r in records if r.dead_letter_reason is None))
        now = time.monotonic()
        if now - self._partitions_checked.get(batch.topic, 0.0) > PARTITIONS_REFRESH_SECONDS:
            # Partitions can be added to a topic; keyed placement follows the new count like Java's.
            self._partitions_checked[batch.topic] = now
            await self._refresh_partitions(batch.topic)

    def _enqueue_retry(self, record: _Record, error: BaseException) -> None:
        if record.waiter is not None and not record.waiter.done():
            # The retry loop resends it alone.
            record.waiter.set_exception(_BatchTooLarge(describe_error(error)))
        else:
            self._enqueue(record)

    def _deliver_ok(self, record: _Record, metadata: tuple[str, int, int]) -> None:
        if record.waiter is not None:
            if not record.waiter.done():
                record.waiter.set_result(metadata)
            return
        self._record_ok(record, metadata)

    def _deliver_error(self, record: _Record, error: BaseException) -> None:
        if record.waiter is not None:
            if not record.waiter.done():
                record.waiter.set_exception(error)
            return
        self._on_error(record, error)

    async def _refresh_partitions(self, topic: str) -> None:
        partitions = await self._producer.partitions_for(topic)
        if partitions:
            self._partition_counts[topic] = max(partitions) + 1

    async def _enqueue_after_metadata(self, record: _Record) -> None:
        try:
            await asyncio.wait_for(
                self._refresh_partitions(record.topic), self.config.request_timeout_seconds
            )
        except asyncio.CancelledError:
            self._record_failed(record, "closed", "sink closed while waiting for topic metadata")
            raise
        except Exception as error:
            self._deliver_error(record, error)
            return
        if record.topic not in self._partition_counts:
            from aiokafka.errors import UnknownTopicOrPartitionError

            self._deliver_error(record, UnknownTopicOrPartitionError(record.topic))
            return
        self._enqueue(record)

    # -- outcomes -----------------------------------------------------------------------------------
    def _on_error(self, record: _Record, error: BaseException) -> None:
        if record.unit.finished:
            return
        klass = classify_kafka_error(error, topic_creation=self.config.topic_creation)
        if isinstance(error, asyncio.CancelledError):
            klass = ErrorClass(not self._closing, "cancelled")
        if klass.retriable and not self._closing:
            record.reset_pending = klass.reset_producer
            self._spawn(self._retry(record, error, klass))
        else:
            self._record_final_error(record, error, klass)

    async def _retry(self, record: _Record, first_error: BaseException, first: ErrorClass) -> None:
        config = self.config
        self._note_retry(record, first_error, first)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(config.retry_max_attempts) | stop_after_delay(config.retry_max_seconds),
            # Exponential from the initial backoff, plus up to one initial backoff of jitter so that
            # thousands of records failed by the same outage do not resend in lockstep.
            wait=wait_exponential(
                multiplier=config.retry_initial_backoff_seconds, max=config.retry_max_backoff_seconds
            )
            + wait_random(0, config.retry_initial_backoff_seconds),
            retry=retry_if_exception(self._retriable),
            before_sleep=functools.partial(self._before_sleep, record),
            reraise=True,
        )
        try:
            await asyncio.sleep(config.retry_initial_backoff_seconds)
            metadata: Any = None
            async for attempt in retrying:
                with attempt:
                    metadata = await self._attempt(record)
        except asyncio.CancelledError:
            self._record_failed(record, "closed", f"sink closed while retrying after {first.reason}")
            raise
        except Exception as error:
            self._record_final_error(
                record, error, classify_kafka_error(error, topic_creation=config.topic_creation)
            )
        else:
            self._record_ok(record, metadata)

    async def _attempt(self, record: _Record) -> Any:
        if record.reset_pending:
            await self._reset_producer(record.generation)
            record.reset_pending = False
        record.waiter = asyncio.get_running_loop().create_future()
        try:
            self._enqueue(record)
            return await record.waiter
        except Exception as error:
            klass = classify_kafka_error(error, topic_creation=self.config.topic_creation)
            if klass.reset_producer:
                record.reset_pending = True
            if isinstance(error, _BatchTooLarge):
                record.isolated = True
            raise
        finally:
            record.waiter = None

    def _retriable(self, error: BaseException) -> bool:
        klass = classify_kafka_error(error, topic_creation=self.config.topic_creation)
        return klass.retriable and not self._closing

    def _before_sleep(self, record: _Record, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            self._note_retry(
                record, error, classify_kafka_error(error, topic_creation=self.config.topic_creation)
            )

    def _note_retry(self, record: _Record, error: BaseException, klass: ErrorClass) -> None:
        self.metrics.retries.labels(self.name, klass.reason).inc()
        self._limiter.warning(
            klass.reason,
            "%s sink: %s to %s (%s), resending with backoff: %s",
            self.name,
            klass.reason,
            record.topic,
            ",".join(self.config.bootstrap_servers),
            describe_error(error),
        )

    def _record_ok(self, record: _Record, metadata: tuple[str, int, int]) -> None:
        unit = record.unit
        if unit.finished:
            return
        if record.dead_letter_reason is not None:
            self.metrics.dead_lettered.labels(self.name, record.dead_letter_reason).inc()
            unit.dead_lettered = True
            if unit.letter_reason is not None or unit.refusal is not None:
                unit.metadata = metadata
        else:
            unit.metadata = metadata  # counted in events_sent per batch
        unit.remaining -= 1
        if unit.remaining <= 0:
            self._finish(unit)

    def _record_final_error(self, record: _Record, error: BaseException, klass: ErrorClass) -> None:
        unit = record.unit
        if unit.finished:
            return
        self.metrics.events_failed.labels(self.name, klass.reason).inc()
        message = describe_error(error)
        refusable = (
            not klass.retriable
            and record.dead_letter_reason is None
            and unit.event is not None
            and bool(self.config.dead_letter_topic)
            and not self._closing
        )
        if refusable:
            assert unit.event is not None
            self._limiter.log(
                logging.ERROR,
                "refused:" + klass.reason,
                "%s sink: event %s refused by %s (%s): %s; sending it to dead-letter topic %s",
                self.name,
                unit.event_id,
                record.topic,
                klass.reason,
                message,
                self.config.dead_letter_topic,
            )
            unit.refusal = (klass.reason, message)
            letter = DeadLetter.from_event(unit.event, klass.reason, message)
            # The dead letter replaces the refused record: unit.remaining is unchanged.
            self._enqueue(self._dead_letter_record(unit, letter, record.key))
            return
        level = logging.WARNING if klass.retriable else logging.ERROR
        self._limiter.log(
            level,
            "failed:" + klass.reason,
            "%s sink: giving up on %s to %s (%s): %s",
            self.name,
            unit.event_id,
            record.topic,
            klass.reason,
            message,
        )
        self._record_failed(record, klass.reason, message)

    def _record_failed(self, record: _Record, reason: str, message: str) -> None:
        unit = record.unit
        if unit.finished:
            return
        unit.failure = (reason, message)
        unit.remaining -= 1
        if unit.remaining <= 0:
            self._finish(unit)

    def _fail_unit(self, unit: _Unit, reason: str, message: str) -> None:
        if unit.finished:
            return
        unit.failure = (reason, message)
        unit.remaining = 0
        self.metrics.events_failed.labels(self.name, reason).inc()
        self._finish(unit)

    def _finish(self, unit: _Unit) -> None:
        unit.finished = True
        self._units.discard(unit)
        if len(self._units) < self._max_in_flight and not self._room.is_set():
            self._room.set()
        if not self._units:
            self._idle.set()
        topic = partition = offset = None
        if unit.metadata is not None:
            topic, partition, offset = unit.metadata
        latency = time.perf_counter() - unit.started
        if unit.failure is not None:
            status, (reason, error) = DeliveryStatus.FAILED, unit.failure
        elif unit.refusal is not None:
            status, (reason, error) = DeliveryStatus.DEAD_LETTERED, unit.refusal
        elif unit.letter_reason is not None:
            status, reason, error = DeliveryStatus.DEAD_LETTERED, unit.letter_reason, None
        else:
            status, reason, error = DeliveryStatus.ACKED, None, None
            if unit.dead_lettered:
                reason = REASON_PARTIAL_REPORT
        self._report(
            DeliveryResult(
                unit.event_id,
                unit.positions,
                status,
                reason=reason,
                error=error,
                topic=topic,
                partition=partition,
                offset=offset,
                latency_seconds=latency,
                dead_lettered=unit.dead_lettered,
            )
        )

    # -- producer management ------------------------------------------------------------------------
    def _make_producer(self) -> Any:
        config = self.config
        kwargs = dict(self._conn)
        kwargs.update(
            acks="all",
            enable_idempotence=True,
            compression_type=None if config.compression == "none" else config.compression,
            linger_ms=config.linger_ms,
            max_batch_size=config.batch_size_bytes,
            max_request_size=config.max_request_size_bytes,
        )
        if self._producer_factory is not None:
            return self._producer_factory(kwargs)
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(**kwargs)

    async def _reset_producer(self, generation: int) -> None:
        async with self._reset_lock:
            if generation != self._generation or self._closing:
                return  # another record already replaced that producer
            log.warning(
                "%s sink: idempotent producer state lost (sequence/producer id); starting a new producer",
                self.name,
            )
            producer = self._make_producer()
            await self._bounded(producer.start(), "producer restart", stop=producer.stop)
            old, self._producer = self._producer, producer
            self._generation += 1
            self._spawn(self._stop_producer(old))

    async def _stop_producer(self, producer: Any) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout=min(10.0, self.config.close_timeout_seconds))
        except Exception as error:
            log.warning("%s sink: producer did not stop cleanly: %s", self.name, describe_error(error))

    async def _prepare_topics(self) -> None:
        """Check or create the topics before the first event, with errors that name the setting."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        config = self.config
        wanted = [t for t in (config.events_topic, config.dead_letter_topic) if t]
        admin = AIOKafkaAdminClient(**self._conn)
        try:
            await self._connect(admin)
            existing = set(await self._bounded(admin.list_topics(), "list topics"))
            missing = [topic for topic in wanted if topic not in existing]
            if not missing:
                return
            if config.topic_policy == "check":
                setting = "events_topic" if config.events_topic in missing else "dead_letter_topic"
                servers = ",".join(config.bootstrap_servers)
                raise SinkConfigError(
                    f"topic {missing[0]!r} ({setting}) does not exist on {servers} and "
                    f"topic_policy='check' (in {config.origin}); create it, or set topic_policy='create'"
                    + (
                        f" (or sasl_username={config.sasl_username!r} lacks Describe permission on it)"
                        if config.sasl_username
                        else ""
                    ),
                    setting="topic_policy",
                )
            replication = config.topic_replication_factor
            if replication == 0:
                cluster = await self._bounded(admin.describe_cluster(), "describe cluster")
                replication = max(1, min(3, len(cluster.get("brokers", []))))
            response = await self._bounded(
                admin.create_topics(
                    [NewTopic(topic, config.topic_partitions, replication) for topic in missing]
                ),
                "create topics",
            )
            for topic_error in response.topic_errors:
                topic, code = topic_error[0], topic_error[1]
                detail = topic_error[2] if len(topic_error) > 2 else None
                if code in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (created concurrently)
                    continue
                from aiokafka.errors import for_code

                error_name = for_code(code).__name__
                raise FatalSinkError(
                    f"cannot create topic {topic!r} with {config.topic_partitions} partition(s), "
                    f"replication {replication} (topic_policy='create', topic_partitions, "
                    f"topic_replication_factor in {config.origin}): {error_name}"
                    + (f": {detail}" if detail else "")
                    + "; create it beforehand and set topic_policy='check'",
                    setting="topic_policy",
                )
            log.info(
                "%s sink: created topic(s) %s (replication %d)", self.name, ", ".join(missing), replication
            )
        finally:
            try:
                await asyncio.wait_for(admin.close(), timeout=5)
            except Exception as error:
                log.debug("admin client close: %s", describe_error(error))

    async def _connect(self, admin: Any) -> None:
        """Bootstrap within connect_timeout_seconds, retrying refused connections (Kafka starting).

        aiokafka reports every bootstrap failure as "Unable to bootstrap"; the real cause (TLS or
        SASL mismatch, refused, reset) is only logged. A direct connection to each server finds it,
        so the error can name the setting at fault; auth and TLS failures are not retried.
        """
        config = self.config
        deadline = time.monotonic() + config.connect_timeout_seconds
        backoff = 0.25
        while True:
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(admin.start(), max(0.1, remaining))
                return
            except Exception as error:
                remaining = deadline - time.monotonic()
                causes = await self._diagnose(max(0.5, min(5.0, remaining)))
                fatal = [c for c in causes if c[2] in ("authentication", "tls")]
                if fatal or remaining <= 0.05:
                    raise self._startup_error("connect", error, causes) from None
                log.info("%s sink: Kafka not reachable yet (%s); retrying", self.name, describe_error(error))
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(2.0, backoff * 2)

    async def _diagnose(self, timeout: float) -> list[tuple[str, str, str]]:
        """(server, error, kind) for each bootstrap server; kind: authentication, tls, network, ok."""
        from aiokafka.conn import create_conn

        conn_kwargs = {
            key: value
            for key, value in self._conn.items()
            if key
            in (
                "client_id",
                "ssl_context",
                "security_protocol",
                "sasl_mechanism",
                "sasl_plain_username",
                "sasl_plain_password",
            )
        }
        causes: list[tuple[str, str, str]] = []
        for server in self.config.bootstrap_servers:
            host, _, port = server.strip().rpartition(":")
            try:
                conn = await asyncio.wait_for(
                    create_conn(
                        host.strip("[]"), int(port), request_timeout_ms=int(timeout * 1000), **conn_kwargs
                    ),
                    timeout,
                )
            except Exception as error:
                causes.append((server, describe_error(error), _failure_kind(error)))
            else:
                conn.close()
                causes.append((server, "connected", "ok"))
        return causes

    async def _bounded(
        self, awaitable: Awaitable[T], what: str, stop: Callable[[], Awaitable[Any]] | None = None
    ) -> T:
        """Run a start-up step within connect_timeout_seconds; turn failures into clear errors."""
        try:
            return await asyncio.wait_for(awaitable, self.config.connect_timeout_seconds)
        except SinkConfigError:
            raise
        except Exception as error:
            if stop is not None:
                try:
                    await asyncio.wait_for(stop(), 5)
                except Exception as stop_error:
                    log.debug("cleanup after failed %s: %s", what, describe_error(stop_error))
            raise self._startup_error(what, error, []) from None

    def _startup_error(
        self, what: str, error: BaseException, causes: list[tuple[str, str, str]]
    ) -> FatalSinkError:
        config = self.config
        servers = ",".join(config.bootstrap_servers)
        where = f"in {config.origin}"
        klass = classify_kafka_error(error, topic_creation=config.topic_creation)
        kinds = {kind for _, _, kind in causes}
        detail = "; ".join(f"{server}: {text}" for server, text, kind in causes if kind != "ok")
        detail = detail or describe_error(error)
        if "authentication" in kinds or klass.reason == "authentication_failed":
            if config.security_protocol.startswith("SASL_"):
                return FatalSinkError(
                    f"{what}: SASL authentication with {servers} failed (security_protocol="
                    f"{config.security_protocol!r}, sasl_mechanism={config.sasl_mechanism!r}, "
                    f"sasl_username={config.sasl_username!r} {where}): {detail}; check the credentials, "
                    "the mechanism, and that the listener speaks SASL",
                    setting="sasl_mechanism",
                )
            return FatalSinkError(
                f"{what}: the broker at {servers} requires authentication, but security_protocol="
                f"{config.security_protocol!r} ({where}): {detail}",
                setting="security_protocol",
            )
        if "tls" in kinds:
            return FatalSinkError(
                f"{what}: TLS handshake with {servers} failed (security_protocol="
                f"{config.security_protocol!r}, ssl_cafile={config.ssl_cafile!r}, ssl_check_hostname="
                f"{config.ssl_check_hostname} {where}): {detail}; does the listener speak TLS?",
                setting="security_protocol",
            )
        if klass.reason == "authorization_failed":
            return FatalSinkError(
                f"{what}: not authorized on {servers} (sasl_username={config.sasl_username!r} {where}): "
                f"{detail}",
                setting="sasl_username",
            )
        if isinstance(error, TimeoutError) and "ok" in kinds:
            return FatalSinkError(
                f"{what}: Kafka at {servers} accepted the connection but did not answer within "
                f"connect_timeout_seconds={config.connect_timeout_seconds:g} ({where}); "
                f"is security_protocol={config.security_protocol!r} what the listener speaks?",
                setting="security_protocol",
            )
        hint = ""
        if config.security_protocol != "PLAINTEXT" and "ok" not in kinds:
            # A plaintext listener resets a TLS handshake: the likeliest cause when TLS is on.
            hint = f"; is security_protocol={config.security_protocol!r} what the listener speaks?"
        return FatalSinkError(
            f"{what}: cannot reach Kafka at bootstrap_servers={servers} within connect_timeout_seconds="
            f"{config.connect_timeout_seconds:g} ({where}): {detail}{hint}",
            setting="bootstrap_servers",
        )

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def describe_error(error: BaseException) -> str:
    """An error as one line: its text, prefixed by its class name unless the text has it."""
    text = str(error).strip()
    name = type(error).__name__
    if not text or text == name:
        return name
    # aiokafka's errors already start with "[Error N] Name" or "Name:"; do not repeat the name.
    return text if name in text else f"{name}: {text}"


def _failure_kind(error: BaseException) -> str:
    """What a failed direct connection says about the configuration."""
    names = {klass.__name__ for klass in type(error).__mro__}
    if isinstance(error, ssl.SSLError) or "SSLError" in names:
        return "tls"
    if classify_kafka_error(error).reason == "authentication_failed":
        return "authentication"
    text = str(error).lower()
    if "sasl" in text or "authentication" in text:
        return "authentication"
    if "ssl" in text or "tls" in text or "certificate" in text:
        return "tls"
    return "network"


def _codec_available(compression: str) -> bool:
    from aiokafka import codec

    checks: dict[str, Callable[[], bool]] = {
        "zstd": codec.has_zstd,
        "lz4": codec.has_lz4,
        "snappy": codec.has_snappy,
        "gzip": codec.has_gzip,
    }
    return checks[compression]()
