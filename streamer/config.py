"""The typed configuration of ``oomstream run``: TOML file, then environment, then command-line flags.

Every option lives in exactly one frozen dataclass below, with its default, its unit in its name and
a one-line help text; the environment variables (``OOMSTREAM_<SECTION>_<OPTION>``), the flags
(``--<section>-<option>``) and the name checks are generated from those dataclasses, so they cannot
drift apart. ``deploy/oomstream.example.toml`` lists every option with its default (a test keeps it
equal to the dataclasses).

Precedence: defaults < TOML file < environment < flags. Unknown keys are errors everywhere (a typo
silently falling back to a default is the worst kind of misconfiguration), with a suggestion.

Secrets: ``kafka.sasl_password`` is a ``Secret`` (its repr is masked); ``sasl_password_file`` and
``sasl_password_env`` name where to read it, lazily, via ``KafkaConfig.sasl_password_value()``, so a
rotated secret file is read at (re)connect time and nothing secret sits in ``Config``.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import tomllib
import types
from collections.abc import Collection, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from streamer.errors import ConfigError as ConfigError  # re-exported: callers import it from here
from streamer.sources.http import HttpSourceOptions
from streamer.sources.kafka_lines import KafkaInputOptions
from streamer.sources.syslog import SyslogSourceOptions

ENV_PREFIX = "OOMSTREAM_"
ENV_CONFIG_PATH = "OOMSTREAM_CONFIG"  # path of the TOML file when --config is not given
ENV_BOOTSTRAP_ALIAS = "OOMSTREAM_KAFKA_BOOTSTRAP"  # short alias of OOMSTREAM_KAFKA_BOOTSTRAP_SERVERS
MASK = "****"
_FLAG_DEST_PREFIX = "oomstream_config__"

SourceKind = Literal["auto", "kmsg", "journald", "file", "stdin"]
KmsgStart = Literal["checkpoint", "oldest", "end"]
# The framing formats of parsers.framing.FORMATS (a test keeps the two equal).
FileFormat = Literal["auto", "kmsg", "dmesg", "dmesg-T", "syslog", "journal-json", "journalctl", "plain"]
Acks = Literal["all"]
Compression = Literal["zstd", "gzip", "lz4", "snappy", "none"]
PartialPolicy = Literal["both", "dead_letter_only"]
TopicPolicy = Literal["create", "check"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text"]
OutputSink = Literal["kafka", "stdout", "file"]
KubeMode = Literal["auto", "in_cluster", "kubeconfig", "off"]
KafkaOffsetReset = Literal["earliest", "latest"]
DEFAULT_LABEL_ALLOWLIST = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app",
    "k8s-app",
    "team",
)

# Event fields a Kafka record key can be taken from (the first one that is set wins).
KEY_FIELDS = ("pod_uid", "container_id", "host", "boot_id", "oom_memcg", "task_memcg", "event_id")

_HOST_PORT = re.compile(r"\[?[\w.:-]+\]?:\d{1,5}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1}
for _exp, _letter in enumerate("KMGT", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[_letter + "IB"] = 1024**_exp
    _SIZE_UNITS[_letter + "B"] = 1000**_exp


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


def _help(text: str, *, csv: bool = False) -> dict[str, Any]:
    """Field metadata: the help text; ``csv``: one comma-separated string is accepted as a list."""
    return {"help": text, "csv": csv}


def _fail(section: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{section}.{key}: {message}", key=f"{section}.{key}")


def _positive(section: str, obj: object, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if value <= 0:
            raise _fail(section, key, f"must be > 0, got {value!r}")


def _non_negative(section: str, obj: object, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if value < 0:
            raise _fail(section, key, f"must be >= 0, got {value!r}")


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) -> (host, port); ValueError if bad."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


# -- the sections ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceConfig:
    SECTION: ClassVar[str] = "source"

    kind: SourceKind = field(
        default="auto",
        metadata=_help("input: auto (files if set, else kmsg, else journald), kmsg, journald, file or stdin"),
    )
    kmsg_path: str = field(default="/dev/kmsg", metadata=_help("kernel log device"))
    kmsg_start: KmsgStart = field(
        default="checkpoint",
        metadata=_help("where kmsg reading starts: checkpoint (resume; oldest when none), oldest, end"),
    )
    journald_directory: str | None = field(
        default=None, metadata=_help("journal directory to read; unset: the system journal")
    )
    journald_since: str | None = field(
        default=None,
        metadata=_help(
            "with no checkpoint, start at this time (journalctl --since syntax); unset: current boot"
        ),
    )
    files: tuple[str, ...] = field(
        default=(), metadata=_help("log files to read with kind=file (gzip ok; env: comma separated)")
    )
    file_format: FileFormat = field(
        default="auto", metadata=_help("format of the files/stdin lines (auto: detect per line)")
    )
    follow: bool = field(
        default=True, metadata=_help("files/stdin: keep reading appended lines; false: stop at end of input")
    )

    def __post_init__(self) -> None:
        s = self.SECTION
        if not self.kmsg_path:
            raise _fail(s, "kmsg_path", "must not be empty")
        if self.kind == "file" and not self.files:
            raise _fail(s, "files", "required when source.kind = 'file'")
        if self.files and self.kind not in ("file", "auto"):
            raise _fail(s, "files", f"is set but source.kind = {self.kind!r} does not read files")
        if any(not path for path in self.files):
            raise _fail(s, "files", "contains an empty path")
        if self.journald_since is not None and not self.journald_since.strip():
            raise _fail(s, "journald_since", "must not be empty (leave it unset for the current boot)")


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    SECTION: ClassVar[str] = "kafka"

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
        metadata=_help("submit to final outcome, retries included; then the event fails (and is spooled)"),
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
            if (topic or key == "events_topic") and not _TOPIC.fullmatch(topic):
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
                f"kafka.{what}_file = {path!r}: cannot read ({error.strerror or error})",
                key=f"kafka.{what}_file",
            ) from None
        if not text:
            raise ConfigError(f"kafka.{what}_file = {path!r}: file is empty", key=f"kafka.{what}_file")
        return text
    if env_name:
        text = (os.environ if env is None else env).get(env_name, "")
        if not text:
            raise ConfigError(
                f"kafka.{what}_env = {env_name!r}: environment variable is unset or empty",
                key=f"kafka.{what}_env",
            )
        return text
    return None


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    SECTION: ClassVar[str] = "spool"

    enabled: bool = field(default=True, metadata=_help("keep events on disk while Kafka is unreachable"))
    directory: str = field(
        default="/var/lib/oomstream/spool", metadata=_help("spool segment files (one process per directory)")
    )
    max_bytes: int = field(
        default=268435456,
        metadata=_help("spool size bound; when full the OLDEST events are dropped (counted)"),
    )
    segment_bytes: int = field(
        default=8388608, metadata=_help("segment file size; the unit that overflow drops")
    )

    def __post_init__(self) -> None:
        s = self.SECTION
        if not self.directory:
            raise _fail(s, "directory", "must not be empty")
        if self.segment_bytes < 4096:
            raise _fail(s, "segment_bytes", f"must be >= 4096, got {self.segment_bytes!r}")
        if self.max_bytes < 2 * self.segment_bytes:
            raise _fail(
                s,
                "max_bytes",
                f"must be >= 2 x segment_bytes ({2 * self.segment_bytes}), got {self.max_bytes!r}",
            )


@dataclass(frozen=True, slots=True)
class StateConfig:
    SECTION: ClassVar[str] = "state"

    directory: str = field(
        default="/var/lib/oomstream/state", metadata=_help("checkpoint files (one process per directory)")
    )
    checkpoint_interval_seconds: float = field(
        default=1.0, metadata=_help("write acknowledged source positions this often")
    )

    def __post_init__(self) -> None:
        if not self.directory:
            raise _fail(self.SECTION, "directory", "must not be empty")
        _positive(self.SECTION, self, "checkpoint_interval_seconds")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    SECTION: ClassVar[str] = "metrics"

    enabled: bool = field(default=True, metadata=_help("serve /metrics, /healthz and /readyz"))
    listen_address: str = field(
        default="127.0.0.1:9464",
        metadata=_help("host:port to listen on (:9464 = all interfaces, port 0 = any)"),
    )

    def __post_init__(self) -> None:
        try:
            split_host_port(self.listen_address)
        except ValueError as error:
            raise _fail(self.SECTION, "listen_address", str(error)) from None


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    SECTION: ClassVar[str] = "pipeline"

    queue_records: int = field(
        default=10000, metadata=_help("framed records buffered between sources and the assembler")
    )
    queue_events: int = field(
        default=1000, metadata=_help("events buffered between the assembler and the sink")
    )
    linger_seconds: float = field(
        default=2.5, metadata=_help("a finished report waits this long for late lines (reaper, group kills)")
    )
    report_timeout_seconds: float = field(
        default=10.0, metadata=_help("an unfinished report is emitted as partial after this long")
    )
    max_tasks: int = field(default=20, metadata=_help("task table rows kept per event (largest RSS first)"))
    max_line_bytes: int = field(
        default=1048576, metadata=_help("longer input lines are truncated (and counted)")
    )
    shutdown_timeout_seconds: float = field(
        default=20.0, metadata=_help("on SIGTERM, drain and flush for at most this long")
    )
    pid_index_enabled: bool = field(
        default=True, metadata=_help("index /proc pid -> cgroup to attribute kills whose report lacks it")
    )
    pid_index_refresh_seconds: float = field(
        default=2.0, metadata=_help("how often the pid index rescans /proc")
    )

    def __post_init__(self) -> None:
        _positive(
            self.SECTION,
            self,
            "queue_records",
            "queue_events",
            "report_timeout_seconds",
            "max_tasks",
            "max_line_bytes",
            "shutdown_timeout_seconds",
            "pid_index_refresh_seconds",
        )
        _non_negative(self.SECTION, self, "linger_seconds")


@dataclass(frozen=True, slots=True)
class LogConfig:
    SECTION: ClassVar[str] = "log"

    level: LogLevel = field(default="INFO", metadata=_help("DEBUG, INFO, WARNING, ERROR or CRITICAL"))
    format: LogFormat = field(default="json", metadata=_help("json (one object per line) or text"))
    rate_limit_seconds: float = field(
        default=60.0, metadata=_help("a repeated error is logged at most once per this interval; 0: off")
    )

    def __post_init__(self) -> None:
        _non_negative(self.SECTION, self, "rate_limit_seconds")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    SECTION: ClassVar[str] = "output"

    sink: OutputSink = field(
        default="kafka", metadata=_help("where events go: kafka, stdout (JSON lines) or file (JSON lines)")
    )
    path: str | None = field(default=None, metadata=_help("the file for sink = file"))

    def __post_init__(self) -> None:
        if self.sink == "file" and not self.path:
            raise _fail(self.SECTION, "path", "required when output.sink = 'file'")
        if self.sink != "file" and self.path:
            raise _fail(self.SECTION, "path", f"is set but output.sink = {self.sink!r} writes no file")


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    SECTION: ClassVar[str] = "kubernetes"

    mode: KubeMode = field(
        default="auto",
        metadata=_help(
            "API access: auto (in-cluster when KUBERNETES_SERVICE_HOST is set, else a kubeconfig if "
            "one exists, else off), in_cluster, kubeconfig, off (no enrichment, no API signals)"
        ),
    )
    kubeconfig_path: str | None = field(
        default=None,
        metadata=_help("kubeconfig for mode=kubeconfig; unset: $KUBECONFIG, else ~/.kube/config"),
    )
    context: str | None = field(default=None, metadata=_help("kubeconfig context; unset: the current one"))
    request_timeout_seconds: float = field(
        default=30.0, metadata=_help("one list/get request to the API server, at most")
    )
    watch_timeout_seconds: float = field(
        default=300.0, metadata=_help("the server ends each watch after this long; it is resumed at once")
    )
    stall_timeout_seconds: float = field(
        default=90.0,
        metadata=_help("a watch silent this long (not even a bookmark) is treated as dropped and reopened"),
    )
    pod_signals: bool = field(
        default=True,
        metadata=_help("publish pod status OOMKilled and Evicted transitions of this node's pods"),
    )
    watch_events: bool = field(
        default=True, metadata=_help("watch Events about this node (NPD OOMKilling, kubelet SystemOOM, ...)")
    )
    events_field_selector: str = field(
        default="involvedObject.kind=Node,involvedObject.name={node}",
        metadata=_help("field selector of the Events watch; {node} is replaced by the node name"),
    )
    pod_wait_seconds: float = field(
        default=3.0,
        metadata=_help("a kill in a pod the cache has not seen yet waits this long for it, then is sent"),
    )
    tombstone_seconds: float = field(
        default=600.0, metadata=_help("deleted pods are kept this long so late kills are still attributed")
    )
    label_allowlist: tuple[str, ...] = field(
        default=DEFAULT_LABEL_ALLOWLIST,
        metadata=_help("pod labels copied onto events (env: comma separated)", csv=True),
    )
    annotation_allowlist: tuple[str, ...] = field(
        default=(), metadata=_help("pod annotations copied onto events (env: comma separated)", csv=True)
    )
    objects_files: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "JSON-lines files of Kubernetes objects (Events, Pods) to read as signals; - is stdin",
            csv=True,
        ),
    )
    objects_follow: bool = field(default=True, metadata=_help("objects_files: keep reading appended lines"))
    objects_kafka_topic: str | None = field(
        default=None,
        metadata=_help(
            "a Kafka topic of Kubernetes objects as JSON (an event exporter's) to read as signals"
        ),
    )
    objects_kafka_group: str = field(
        default="oomstream-k8s-objects", metadata=_help("consumer group for objects_kafka_topic")
    )
    objects_kafka_offset_reset: KafkaOffsetReset = field(
        default="earliest", metadata=_help("where a new consumer group starts: earliest or latest")
    )
    incidents: bool = field(
        default=True, metadata=_help("correlate the signals of one kill and publish an incident summary")
    )
    incident_window_seconds: float = field(
        default=120.0,
        metadata=_help("signals this close in time can belong to one kill; closes the incident"),
    )
    workload_window_seconds: float = field(
        default=900.0, metadata=_help("repeated kills of one workload are counted over this long")
    )

    def __post_init__(self) -> None:
        s = self.SECTION
        _positive(
            s,
            self,
            "request_timeout_seconds",
            "watch_timeout_seconds",
            "stall_timeout_seconds",
            "incident_window_seconds",
            "workload_window_seconds",
        )
        _non_negative(s, self, "pod_wait_seconds", "tombstone_seconds")
        if self.kubeconfig_path is not None and self.mode not in ("auto", "kubeconfig"):
            raise _fail(
                s, "kubeconfig_path", f"is set but kubernetes.mode = {self.mode!r} reads no kubeconfig"
            )
        if any(not path for path in self.objects_files):
            raise _fail(s, "objects_files", "contains an empty path")
        if self.objects_files.count("-") > 1:
            raise _fail(s, "objects_files", "names stdin (-) more than once")
        if self.objects_kafka_topic is not None and not _TOPIC.fullmatch(self.objects_kafka_topic):
            raise _fail(s, "objects_kafka_topic", f"{self.objects_kafka_topic!r} is not a valid topic name")
        if not self.objects_kafka_group:
            raise _fail(s, "objects_kafka_group", "must not be empty")
        for key in ("label_allowlist", "annotation_allowlist"):
            if any(not item for item in getattr(self, key)):
                raise _fail(s, key, "contains an empty key")

    def resolved_mode(
        self, env: Mapping[str, str] | None = None
    ) -> Literal["in_cluster", "kubeconfig", "off"]:
        """What ``auto`` means on this machine."""
        if self.mode != "auto":
            return self.mode
        env = os.environ if env is None else env
        if env.get("KUBERNETES_SERVICE_HOST"):
            return "in_cluster"
        candidates = [self.kubeconfig_path, *(env.get("KUBECONFIG", "").split(os.pathsep))]
        candidates.append(os.path.join(os.path.expanduser("~"), ".kube", "config"))
        if any(path and os.path.isfile(path) for path in candidates):
            return "kubeconfig"
        return "off"


SECTIONS: dict[str, type[Any]] = {
    "source": SourceConfig,
    "kafka": KafkaConfig,
    "spool": SpoolConfig,
    "state": StateConfig,
    "metrics": MetricsConfig,
    "pipeline": PipelineConfig,
    "log": LogConfig,
    "output": OutputConfig,
    "kubernetes": KubernetesConfig,
    "syslog": SyslogSourceOptions,
    "http": HttpSourceOptions,
    "kafka_input": KafkaInputOptions,
}
TOP_LEVEL_HELP = {"node_name": "node name put on events; unset: $NODE_NAME, else the host name"}


@dataclass(frozen=True, slots=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    log: LogConfig = field(default_factory=LogConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    syslog: SyslogSourceOptions = field(default_factory=SyslogSourceOptions)
    http: HttpSourceOptions = field(default_factory=HttpSourceOptions)
    kafka_input: KafkaInputOptions = field(default_factory=KafkaInputOptions)
    node_name: str | None = None
    # Dotted option -> where its value came from (file path, variable, flag); defaults are absent.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def redacted(self) -> dict[str, Any]:
        """Every option as plain data (lists, no tuples), secrets replaced by ``****``."""
        out: dict[str, Any] = {"node_name": self.node_name}
        for section in SECTIONS:
            obj = getattr(self, section)
            values: dict[str, Any] = {}
            for f in fields(obj):
                value = getattr(obj, f.name)
                if isinstance(value, Secret):
                    value = MASK
                elif isinstance(value, tuple):
                    value = list(value)
                values[f.name] = value
            out[section] = values
        return out

    def resolved_node_name(self, env: Mapping[str, str] | None = None) -> str:
        """``node_name``, else ``$NODE_NAME`` (the downward API's usual name), else the host name."""
        env = os.environ if env is None else env
        return self.node_name or env.get("NODE_NAME") or os.uname().nodename


# -- introspection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option as the loaders and the CLI see it."""

    key: str  # dotted: "kafka.linger_ms", or "node_name"
    section: str | None
    name: str
    type: Any
    default: Any
    help: str
    csv: bool
    secret: bool

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()

    @property
    def flag(self) -> str:
        return "--" + self.key.replace(".", "-").replace("_", "-")

    @property
    def dest(self) -> str:
        return _FLAG_DEST_PREFIX + self.key.replace(".", "__")


def option_specs() -> list[OptionSpec]:
    """Every option, in declaration order (top-level first)."""
    specs = [
        OptionSpec(
            "node_name", None, "node_name", str | None, None, TOP_LEVEL_HELP["node_name"], False, False
        )
    ]
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            spec_type = hints[f.name]
            specs.append(
                OptionSpec(
                    key=f"{section}.{f.name}",
                    section=section,
                    name=f.name,
                    type=spec_type,
                    default=f.default if f.default is not MISSING else None,
                    help=str(f.metadata.get("help", "")),
                    csv=bool(f.metadata.get("csv", False)),
                    secret=Secret in _inner_types(spec_type),
                )
            )
    return specs


def _inner_types(spec: Any) -> tuple[Any, ...]:
    if get_origin(spec) in (Union, types.UnionType):
        return tuple(a for a in get_args(spec) if a is not type(None))
    return (spec,)


def _specs_by_key() -> dict[str, OptionSpec]:
    return {spec.key: spec for spec in option_specs()}


def _suggest(word: str, choices: Collection[str], quote: bool = True) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if quote else f" (did you mean {close[0]}?)"


# -- value conversion ------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``"256MiB"``, ``"8 MB"``, ``"4096"`` -> bytes (KiB/MiB/GiB are 1024-based, KB/MB/GB 1000-based)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    unit = (match.group(2) or "").upper()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _describe_type(spec: Any, name: str) -> str:
    inner = _inner_types(spec)
    optional = get_origin(spec) in (Union, types.UnionType)
    base = inner[0]
    if get_origin(base) is Literal:
        text = "one of " + ", ".join(repr(a) for a in get_args(base))
    elif base is bool:
        text = "true or false"
    elif base is int:
        text = "an integer" + (" (bytes; KiB/MiB/GiB suffixes allowed)" if name.endswith("_bytes") else "")
    elif base is float:
        text = "a number"
    elif get_origin(base) is tuple:
        text = "a list of strings or a comma-separated string"
    else:
        text = "a string"
    return text + (" (empty: unset)" if optional and base is not str else "")


def convert(spec: OptionSpec, value: object, *, from_string: bool) -> Any:
    """``value`` as the option's type. ``from_string``: it came from a variable or a flag.

    Raises ValueError with what was expected; callers add where the value came from.
    """
    optional = get_origin(spec.type) in (Union, types.UnionType)
    base = _inner_types(spec.type)[0]
    expected = _describe_type(spec.type, spec.name)
    if optional and (value is None or (isinstance(value, str) and value == "")):
        return None  # TOML has no null: an empty string unsets an optional option
    if get_origin(base) is Literal:
        choices = get_args(base)
        if value in choices:
            return value
        if isinstance(value, str):
            folded = [c for c in choices if c.lower() == value.strip().lower()]
            if len(folded) == 1:
                return folded[0]
            raise ValueError(f"expected {expected}, got {value!r}{_suggest(value, choices)}")
        raise ValueError(f"expected {expected}, got {value!r}")
    if base is bool:
        if isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
        raise ValueError(f"expected {expected}, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and (from_string or spec.name.endswith("_bytes")):
            try:
                if spec.name.endswith("_bytes"):
                    return parse_size(value.replace("_", ""))
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ValueError(f"expected {expected}, got {value!r}")
    if base is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif from_string and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise ValueError(f"expected {expected}, got {value!r}")
        return number
    if get_origin(base) is tuple:
        if isinstance(value, str):
            if from_string or spec.csv:
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return (value,)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            items: list[str] = []
            for item in value:
                parts = item.split(",") if spec.csv else [item]
                items.extend(p.strip() for p in parts if p.strip())
            return tuple(items)
        raise ValueError(f"expected {expected}, got {value!r}")
    if base is Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return Secret(value)
        raise ValueError(f"expected a string, got a {type(value).__name__}")  # never echo a secret
    if base is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected {expected}, got {value!r}")
    raise ValueError(f"unsupported option type {spec.type!r}")  # pragma: no cover - all types handled above


# -- loading ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Value:
    value: Any
    origin: str  # for messages: "oomstream.toml", "OOMSTREAM_KAFKA_LINGER_MS", "--kafka-linger-ms"
    from_string: bool


def load_config(
    path: str | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
    *,
    allowed_env: Collection[str] = (),
) -> Config:
    """Defaults, then the TOML file at ``path``, then ``OOMSTREAM_*`` variables, then ``overrides``.

    ``path`` None: ``$OOMSTREAM_CONFIG`` if set, else no file. ``overrides`` use dotted keys
    (``"kafka.linger_ms"``, ``"node_name"``); ``overrides_from_args`` builds them from flags.
    ``allowed_env``: other ``OOMSTREAM_*`` names this process uses, not to be taken for typos.
    Raises ConfigError naming the key, the bad value and where it came from.
    """
    specs = _specs_by_key()
    values: dict[str, _Value] = {}
    if path is None:
        path = env.get(ENV_CONFIG_PATH) or None
    if path is not None:
        for key, value in _read_toml(path, specs).items():
            values[key] = _Value(value, path, from_string=False)
    unknown_env = _read_env(env, specs, values)
    for key, value in (overrides or {}).items():
        spec = specs.get(key)
        if spec is None:
            raise ConfigError(f"unknown option {key!r}{_suggest(key, specs)}", key=key)
        values[key] = _Value(value, spec.flag, from_string=isinstance(value, str))
    # Variables that *_env options name hold secrets, not configuration: they are allowed.
    referenced = {str(v.value) for k, v in values.items() if k.endswith("_env") and isinstance(v.value, str)}
    for name in unknown_env:
        if name not in referenced and name not in allowed_env:
            valid = [spec.env_name for spec in specs.values()] + [ENV_BOOTSTRAP_ALIAS, ENV_CONFIG_PATH]
            raise ConfigError(
                f"{name}: unknown configuration variable{_suggest(name, valid, quote=False)}", key=None
            )
    return _build(values, specs)


def _read_toml(path: str, specs: Mapping[str, OptionSpec]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    out: dict[str, Any] = {}
    top_level = [k for k in specs if "." not in k]
    for name, content in document.items():
        if name in SECTIONS:
            if not isinstance(content, dict):
                raise ConfigError(f"{path}: {name!r} must be a table ([{name}]), got {content!r}", key=name)
            options = [spec.name for spec in specs.values() if spec.section == name]
            for option, value in content.items():
                key = f"{name}.{option}"
                if key not in specs:
                    raise ConfigError(f"{path}: unknown key {key!r}{_suggest(option, options)}", key=key)
                out[key] = value
        elif name in top_level:
            out[name] = content
        else:
            raise ConfigError(
                f"{path}: unknown key {name!r}{_suggest(name, [*SECTIONS, *top_level])}", key=name
            )
    return out


def _read_env(
    env: Mapping[str, str], specs: Mapping[str, OptionSpec], values: dict[str, _Value]
) -> list[str]:
    """Put known ``OOMSTREAM_*`` variables into ``values``; return the unknown names."""
    by_env = {spec.env_name: spec for spec in specs.values()}
    unknown: list[str] = []
    alias = env.get(ENV_BOOTSTRAP_ALIAS)
    full = specs["kafka.bootstrap_servers"].env_name
    if alias is not None and env.get(full) is not None and alias != env[full]:
        raise ConfigError(
            f"{ENV_BOOTSTRAP_ALIAS} and {full} are both set, to different values; set one",
            key="kafka.bootstrap_servers",
        )
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        spec = by_env.get(name)
        if name == ENV_BOOTSTRAP_ALIAS:
            spec = specs["kafka.bootstrap_servers"]
        if spec is None:
            unknown.append(name)
            continue
        values[spec.key] = _Value(env[name], name, from_string=True)
    return unknown


def _build(values: Mapping[str, _Value], specs: Mapping[str, OptionSpec]) -> Config:
    typed: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    top: dict[str, Any] = {}
    for key, item in values.items():
        spec = specs[key]
        try:
            converted = convert(spec, item.value, from_string=item.from_string)
        except ValueError as error:
            where = _where(item.origin, spec)
            raise ConfigError(f"{where}: {error}", key=key) from None
        if spec.section is None:
            top[spec.name] = converted
        else:
            typed[spec.section][spec.name] = converted
    origins = {key: item.origin for key, item in values.items()}
    try:
        sections = {name: cls(**typed[name]) for name, cls in SECTIONS.items()}
        return Config(**sections, **top, origins=origins)
    except ConfigError as error:
        origin = origins.get(error.key or "")
        if origin is None:
            raise
        raise ConfigError(f"{error} (set in {origin})", key=error.key) from None


def _where(origin: str, spec: OptionSpec) -> str:
    if origin.startswith(ENV_PREFIX) or origin.startswith("--"):
        return f"{origin} ({spec.key})"
    return f"{origin}: {spec.key}"


def with_overrides(config: Config, overrides: Mapping[str, object]) -> Config:
    """A copy of ``config`` with dotted-key overrides applied and validated (tests, programmatic use)."""
    specs = _specs_by_key()
    sections: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        spec = specs.get(key)
        if spec is None:
            raise ConfigError(f"unknown option {key!r}{_suggest(key, specs)}", key=key)
        try:
            converted = convert(spec, value, from_string=isinstance(value, str))
        except ValueError as error:
            raise ConfigError(f"{key}: {error}", key=key) from None
        if spec.section is None:
            top[spec.name] = converted
        else:
            sections.setdefault(spec.section, {})[spec.name] = converted
    changed = {name: replace(getattr(config, name), **opts) for name, opts in sections.items()}
    return replace(config, **changed, **top)


# -- command-line flags ----------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser, *, config_flag: bool = True) -> None:
    """A ``--section-option`` flag for every option (secrets excepted), plus ``--config PATH``.

    Flags default to "not given" so that only what the user typed overrides the file and
    environment. Secret values have no flag: command lines are world-readable in /proc.
    """
    group = parser.add_argument_group(
        "configuration", "override the configuration file and OOMSTREAM_<SECTION>_<OPTION> variables"
    )
    if config_flag:
        group.add_argument(
            "--config",
            dest="config_path",
            metavar="PATH",
            default=None,
            help=f"TOML configuration file (default: ${ENV_CONFIG_PATH}, else built-in defaults)",
        )
    for spec in option_specs():
        if spec.secret:
            continue
        base = _inner_types(spec.type)[0]
        default = "unset" if spec.default in (None, ()) else _show_default(spec.default)
        help_text = f"{spec.help} (default: {default}; env {spec.env_name})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": spec.dest, "default": argparse.SUPPRESS, "help": help_text}
        if base is bool:
            group.add_argument(spec.flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif get_origin(base) is tuple:
            metavar = "VALUE[,VALUE...]" if spec.csv else "VALUE"
            group.add_argument(spec.flag, action="append", metavar=metavar, **kwargs)
        elif get_origin(base) is Literal:
            group.add_argument(spec.flag, metavar="{" + ",".join(get_args(base)) + "}", **kwargs)
        else:
            group.add_argument(spec.flag, metavar=spec.name.rsplit("_", 1)[-1].upper(), **kwargs)


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The flags the user gave, as dotted-key overrides for ``load_config``."""
    out: dict[str, object] = {}
    for spec in option_specs():
        if hasattr(args, spec.dest):
            out[spec.key] = getattr(args, spec.dest)
    return out


def iter_env_names() -> Iterator[str]:
    """Every configuration variable name (documentation, tests)."""
    yield ENV_CONFIG_PATH
    yield ENV_BOOTSTRAP_ALIAS
    for spec in option_specs():
        yield spec.env_name
