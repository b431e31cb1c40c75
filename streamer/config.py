"""The typed configuration of ``oomstream run``: TOML file, then environment, then command-line flags.

Every option lives in exactly one frozen dataclass, with its default, its unit in its name and a
one-line help text: the service's own sections below (``[spool]``, ``[state]``, ``[pipeline]``...)
and one table per registered component (``[sources.kmsg]``, ``[sinks.kafka]``...), whose options
class lives in the component's module and is found through ``streamer.registry``. The environment
variables (``OOMSTREAM_SOURCES_KMSG_PATH``), the flags (``--sources-kmsg-path``) and the name checks
are generated from those dataclasses, so they cannot drift apart. ``[sources] enabled`` and
``[sinks] enabled`` choose which components run. ``deploy/oomstream.example.toml`` lists every
option with its default (a test keeps it equal to the dataclasses). Keys of the layout before
issue 11 (``[source]``, ``[kafka]``, ``[output]``) are errors that name the new key.

Precedence: defaults < TOML file < environment < flags. Unknown keys are errors everywhere (a typo
silently falling back to a default is the worst kind of misconfiguration), with a suggestion.

Secrets: ``sinks.kafka.sasl_password`` is a ``Secret`` (its repr is masked); ``sasl_password_file``
and ``sasl_password_env`` name where to read it; ``streamer.kafka.connection`` reads it when a client
is built and again at every reconnection, so a rotated secret file takes effect without a restart.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import os
import re
import tomllib
import types
from collections.abc import Collection, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from streamer.errors import ConfigError
from streamer.kafka.options import MASK, TOPIC_NAME, Secret

__all__ = ["MASK", "TOPIC_NAME", "ConfigError", "Secret"]

ENV_PREFIX = "OOMSTREAM_"
ENV_CONFIG_PATH = "OOMSTREAM_CONFIG"  # path of the TOML file when --config is not given
ENV_BOOTSTRAP_ALIAS = "OOMSTREAM_KAFKA_BOOTSTRAP"  # short alias of OOMSTREAM_SINKS_KAFKA_BOOTSTRAP_SERVERS
BOOTSTRAP_KEY = "sinks.kafka.bootstrap_servers"
_FLAG_DEST_PREFIX = "oomstream_config__"

# The framing formats of parsers.framing.FORMATS (a test keeps the two equal).
FileFormat = Literal["auto", "kmsg", "dmesg", "dmesg-T", "syslog", "journal-json", "journalctl", "plain"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text"]
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

_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1}
for _exp, _letter in enumerate("KMGT", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[_letter + "IB"] = 1024**_exp
    _SIZE_UNITS[_letter + "B"] = 1000**_exp


class OptionError(ConfigError):
    """Raised by an options class: ``option`` is the field name; the loader adds the table name
    and where the value was set."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message, key=option)


def option_help(text: str, *, csv: bool = False) -> dict[str, Any]:
    """Field metadata: the help text; ``csv``: one comma-separated string is accepted as a list."""
    return {"help": text, "csv": csv}


_help = option_help


def _fail(section: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{section}.{key}: {message}", key=f"{section}.{key}")


def require_positive(obj: object, *keys: str) -> None:
    """For options classes: each of ``keys`` must be > 0."""
    for key in keys:
        value = getattr(obj, key)
        if value <= 0:
            raise OptionError(key, f"must be > 0, got {value!r}")


def require_non_negative(obj: object, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if value < 0:
            raise OptionError(key, f"must be >= 0, got {value!r}")


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
    linger_seconds: float = field(
        default=2.5, metadata=_help("a finished report waits this long for late lines (reaper, group kills)")
    )
    report_timeout_seconds: float = field(
        default=10.0, metadata=_help("an unfinished report is emitted as partial after this long")
    )
    max_tasks: int = field(default=20, metadata=_help("task table rows kept per event (largest RSS first)"))
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
            "report_timeout_seconds",
            "max_tasks",
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
class SourcesConfig:
    SECTION: ClassVar[str] = "sources"

    enabled: tuple[str, ...] = field(
        default=("auto",),
        metadata=_help(
            "kernel log inputs, each configured in its [sources.<name>] table: auto (files if "
            "sources.files.paths is set, else kmsg, else journald), kmsg, journald, files, stdin, "
            "syslog and http (listeners for log shippers), kafka_lines (central mode)",
            csv=True,
        ),
    )


@dataclass(frozen=True, slots=True)
class SinksConfig:
    SECTION: ClassVar[str] = "sinks"

    enabled: tuple[str, ...] = field(
        default=("kafka",),
        metadata=_help(
            "where events go, each configured in its [sinks.<name>] table: kafka, stdout (JSON "
            "lines) or file (JSON lines); the first decides delivery (spool, checkpoints), the "
            "others get copies and never hold it up",
            csv=True,
        ),
    )


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
    # Bounds (issue 15; README "Bounds and what happens at them").
    max_backfill_occurrences: int = field(
        default=100,
        metadata=_help(
            "an Event's count jump: the newest this many occurrences are emitted one by one, older "
            "ones declared in skipped_occurrences of the first; 0: emit every occurrence"
        ),
    )
    max_object_line_bytes: int = field(
        default=1048576,
        metadata=_help(
            "longer Kubernetes object lines (objects_files, Kafka record values) are skipped and counted"
        ),
    )
    max_ledger_signals: int = field(
        default=100000,
        metadata=_help(
            "published signal ids (and Event objects) remembered across restarts; oldest forgotten first"
        ),
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
            "max_ledger_signals",
            "max_object_line_bytes",
        )
        _non_negative(s, self, "pod_wait_seconds", "tombstone_seconds", "max_backfill_occurrences")
        if self.kubeconfig_path is not None and self.mode not in ("auto", "kubeconfig"):
            raise _fail(
                s, "kubeconfig_path", f"is set but kubernetes.mode = {self.mode!r} reads no kubeconfig"
            )
        if any(not path for path in self.objects_files):
            raise _fail(s, "objects_files", "contains an empty path")
        if self.objects_files.count("-") > 1:
            raise _fail(s, "objects_files", "names stdin (-) more than once")
        if self.objects_kafka_topic is not None and not TOPIC_NAME.fullmatch(self.objects_kafka_topic):
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


# The service's own sections; the component tables come from streamer.registry.
CORE_SECTIONS: dict[str, type[Any]] = {
    "sources": SourcesConfig,
    "sinks": SinksConfig,
    "spool": SpoolConfig,
    "state": StateConfig,
    "metrics": MetricsConfig,
    "pipeline": PipelineConfig,
    "log": LogConfig,
    "kubernetes": KubernetesConfig,
}
TOP_LEVEL_HELP = {"node_name": "node name put on events; unset: $NODE_NAME, else the host name"}

# Keys of the layout before issue 11 -> their new key ("" : removed, with the reason after "|").
RENAMED: dict[str, str] = {
    "source.kind": "sources.enabled",
    "source.kmsg_path": "sources.kmsg.path",
    "source.kmsg_start": "sources.kmsg.start",
    "source.journald_directory": "sources.journald.directory",
    "source.journald_since": "sources.journald.since",
    "source.files": "sources.files.paths",
    "source.file_format": "sources.files.format (sources.stdin.format for stdin)",
    "source.follow": "sources.files.follow",
    "output.sink": "sinks.enabled",
    "output.path": "sinks.file.path",
    "pipeline.max_line_bytes": "sources.files.max_line_bytes",
    "kafka.deadletter_topic": "sinks.kafka.dead_letter_topic",
    "kafka.key": "sinks.kafka.key_fields",
    "pipeline.queue_events": "|removed: it was never used (sinks.kafka.max_in_flight bounds the events "
    "waiting for the sink)",
    "syslog.enabled": 'sources.enabled (add "syslog")',
    "http.enabled": 'sources.enabled (add "http")',
    "kafka_input.enabled": 'sources.enabled (add "kafka_lines")',
    "k8s_events.enabled": 'sinks.enabled (name "k8s_events" after the first sink: '
    'sinks.enabled = ["kafka", "k8s_events"])',
}
_OLD_SECTIONS = {
    "source": "sources.<name>",
    "output": "sinks.<name>",
    "kafka": "sinks.kafka",
    "k8s_events": "sinks.k8s_events",
    "syslog": "sources.syslog",
    "http": "sources.http",
    "kafka_input": "sources.kafka_lines",
}
# Old sections whose options kept their names in their component's table.
_MOVED_SECTIONS = {
    "kafka": "sinks.kafka",
    "k8s_events": "sinks.k8s_events",
    "syslog": "sources.syslog",
    "http": "sources.http",
    "kafka_input": "sources.kafka_lines",
}


def _new_key(key: str) -> str | None:
    """The key that replaced the old dotted ``key`` ("|reason" when removed); None if not an old key."""
    section, _, option = key.partition(".")
    new = RENAMED.get(key)
    if new is None and section in _MOVED_SECTIONS and option:
        new = f"{_MOVED_SECTIONS[section]}.{option}"
    if new is None and section in _OLD_SECTIONS:
        new = _OLD_SECTIONS[section]
    return new


def _renamed(key: str) -> str | None:
    """What replaced the old dotted ``key``, as a sentence; None if it is not an old key."""
    new = _new_key(key)
    if new is None:
        return None
    if new.startswith("|"):
        return f"{key} was {new[1:]}"
    return f"{key} is now {new}"


def sections() -> dict[str, type[Any]]:
    """Every table name -> its options class: the service's own, then the registered components."""
    from streamer import registry  # the registry imports component modules; only run needs it

    out = dict(CORE_SECTIONS)
    for table in registry.COMPONENTS:
        out[table] = registry.component(table).options
    return out


@dataclass(frozen=True, slots=True)
class Config:
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    sinks: SinksConfig = field(default_factory=SinksConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    log: LogConfig = field(default_factory=LogConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    node_name: str | None = None
    # Component table ("sources.kmsg") -> its options; every registered component has an entry.
    components: Mapping[str, Any] = field(default_factory=lambda: _component_defaults())
    # Dotted option -> where its value came from (file path, variable, flag); defaults are absent.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        from streamer import registry

        kinds: tuple[tuple[registry.ComponentKind, tuple[str, ...]], ...] = (
            ("sources", self.sources.enabled),
            ("sinks", self.sinks.enabled),
        )
        for kind, enabled in kinds:
            known = registry.names(kind)
            if not enabled:
                raise ConfigError(
                    f"{kind}.enabled: needs at least one of {', '.join(known)}", key=f"{kind}.enabled"
                )
            for name in enabled:
                if name not in known:
                    raise ConfigError(
                        f"{kind}.enabled: unknown {kind[:-1]} {name!r}{_suggest(name, known)} "
                        f"(registered: {', '.join(known)})",
                        key=f"{kind}.enabled",
                    )
            if len(set(enabled)) != len(enabled):
                raise ConfigError(f"{kind}.enabled: {list(enabled)!r} names one twice", key=f"{kind}.enabled")
        # A component may check its options against what is enabled (options needed when it runs,
        # or set although it does not run): ``check_config(enabled names of its kind)``.
        for table, options in self.components.items():
            check = getattr(options, "check_config", None)
            if check is not None:
                try:
                    check(self.sources.enabled if table.startswith("sources.") else self.sinks.enabled)
                except OptionError as error:
                    raise ConfigError(f"{table}.{error.key}: {error}", key=f"{table}.{error.key}") from None

    def options(self, table: str, cls: type[OptionsT]) -> OptionsT:
        """The options of component ``table``, checked to be a ``cls``."""
        value = self.components[table]
        if not isinstance(value, cls):
            raise TypeError(f"{table}: options are a {type(value).__name__}, not a {cls.__name__}")
        return value

    def redacted(self) -> dict[str, Any]:
        """Every option as plain data (lists, no tuples, nested tables), secrets replaced by ``****``."""
        out: dict[str, Any] = {"node_name": self.node_name}
        for table in sections():
            obj = getattr(self, table) if table in CORE_SECTIONS else self.components[table]
            values: dict[str, Any] = {}
            for f in fields(obj):
                if not f.metadata.get("option", True):
                    continue  # not an option (KafkaOptions.origin)
                value = getattr(obj, f.name)
                if isinstance(value, Secret):
                    value = MASK
                elif isinstance(value, tuple):
                    value = list(value)
                values[f.name] = value
            parent = out
            *outer, last = table.split(".")
            for name in outer:
                parent = parent.setdefault(name, {})
            parent.setdefault(last, {}).update(values)
        return out

    def resolved_node_name(self, env: Mapping[str, str] | None = None) -> str:
        """``node_name``, else ``$NODE_NAME`` (the downward API's usual name), else the host name."""
        env = os.environ if env is None else env
        return self.node_name or env.get("NODE_NAME") or os.uname().nodename


OptionsT = TypeVar("OptionsT")


def _component_defaults() -> dict[str, Any]:
    return {table: cls() for table, cls in sections().items() if table not in CORE_SECTIONS}


# -- introspection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option as the loaders and the CLI see it."""

    key: str  # dotted: "sinks.kafka.linger_ms", "spool.max_bytes", or "node_name"
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
    for section, cls in sections().items():
        specs.extend(_specs_of(section, cls))
    return specs


def _specs_of(section: str, cls: type[Any]) -> list[OptionSpec]:
    """The options of one options class, as table ``section``."""
    hints = get_type_hints(cls)
    return [
        OptionSpec(
            key=f"{section}.{f.name}",
            section=section,
            name=f.name,
            type=hints[f.name],
            default=f.default if f.default is not MISSING else None,
            help=str(f.metadata.get("help", "")),
            csv=bool(f.metadata.get("csv", False)),
            secret=Secret in _inner_types(hints[f.name]),
        )
        for f in fields(cls)
        if f.metadata.get("option", True)  # not an option: KafkaOptions.origin
    ]


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
    origin: str  # for messages: "oomstream.toml", "OOMSTREAM_SINKS_KAFKA_LINGER_MS", "--sinks-kafka-..."
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
            raise _unknown_key(f"unknown option {key!r}", key, specs)
        values[key] = _Value(value, spec.flag, from_string=isinstance(value, str))
    # Variables that *_env options name hold secrets, not configuration: they are allowed.
    referenced = {str(v.value) for k, v in values.items() if k.endswith("_env") and isinstance(v.value, str)}
    for name in unknown_env:
        if name not in referenced and name not in allowed_env:
            raise _unknown_variable(name, specs)
    return _build(values, specs)


def _unknown_key(prefix: str, key: str, candidates: Collection[str]) -> ConfigError:
    renamed = _renamed(key)
    if renamed is not None:
        return ConfigError(f"{prefix}: {renamed}", key=key)
    return ConfigError(f"{prefix}{_suggest(key, candidates)}", key=key)


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
    tables = set(sections())
    _read_table(path, document, "", tables, specs, out)
    return out


def _read_table(
    path: str,
    content: Mapping[str, Any],
    prefix: str,
    tables: Collection[str],
    specs: Mapping[str, OptionSpec],
    out: dict[str, Any],
) -> None:
    """Put the options of table ``prefix`` (``""``: the top level) and its sub-tables into ``out``."""
    for name, value in content.items():
        key = prefix + name
        if key in specs:
            out[key] = value
        elif key in tables or any(t.startswith(key + ".") for t in tables):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key!r} must be a table ([{key}]), got {value!r}", key=key)
            _read_table(path, value, key + ".", tables, specs, out)
        else:
            if isinstance(value, dict) and value:  # an old table: name its first key's new name
                inner = f"{key}.{next(iter(value))}"
                if _renamed(inner) is not None:
                    raise _unknown_key(f"{path}: unknown key {inner!r}", inner, ())
            if _renamed(key) is not None:
                raise _unknown_key(f"{path}: unknown key {key!r}", key, ())
            here = {k[len(prefix) :].split(".")[0] for k in [*specs, *tables] if k.startswith(prefix)}
            raise ConfigError(f"{path}: unknown key {key!r}{_suggest(name, here)}", key=key)


def _read_env(
    env: Mapping[str, str], specs: Mapping[str, OptionSpec], values: dict[str, _Value]
) -> list[str]:
    """Put known ``OOMSTREAM_*`` variables into ``values``; return the unknown names."""
    by_env = {spec.env_name: spec for spec in specs.values()}
    unknown: list[str] = []
    alias = env.get(ENV_BOOTSTRAP_ALIAS)
    full = specs[BOOTSTRAP_KEY].env_name
    if alias is not None and env.get(full) is not None and alias != env[full]:
        raise ConfigError(
            f"{ENV_BOOTSTRAP_ALIAS} and {full} are both set, to different values; set one",
            key=BOOTSTRAP_KEY,
        )
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        spec = by_env.get(name)
        if name == ENV_BOOTSTRAP_ALIAS:
            spec = specs[BOOTSTRAP_KEY]
        if spec is None:
            unknown.append(name)
            continue
        values[spec.key] = _Value(env[name], name, from_string=True)
    return unknown


def _unknown_variable(name: str, specs: Mapping[str, OptionSpec]) -> ConfigError:
    old = {ENV_PREFIX + k.replace(".", "_").upper(): k for k in RENAMED}
    # Longest first: OOMSTREAM_KAFKA_INPUT_TOPICS is kafka_input.topics, not kafka.input_topics.
    for section in sorted(_OLD_SECTIONS, key=len, reverse=True):
        if name.startswith(f"{ENV_PREFIX}{section.upper()}_") and name not in old:
            old[name] = f"{section}.{name[len(ENV_PREFIX) + len(section) + 1 :].lower()}"
    old_key = old.get(name)
    if old_key is not None:
        new_spec = specs.get((_new_key(old_key) or "").split(" ")[0])
        hint = f" (variable {new_spec.env_name})" if new_spec is not None else ""
        return ConfigError(f"{name}: {_renamed(old_key)}{hint}", key=old_key)
    valid = [spec.env_name for spec in specs.values()] + [ENV_BOOTSTRAP_ALIAS, ENV_CONFIG_PATH]
    suggestion = _suggest(name, valid, quote=False)
    return ConfigError(f"{name}: unknown configuration variable{suggestion}", key=None)


def _make_section(table: str, cls: type[Any], values: Mapping[str, Any], origins: Mapping[str, str]) -> Any:
    """``cls(**values)``; an error names ``table.option`` and where its value was set."""
    try:
        return cls(**values)
    except ConfigError as error:
        key = error.key or ""
        message = str(error)
        if isinstance(error, OptionError):
            key = f"{table}.{key}"
            message = f"{key}: {message}"
        origin = origins.get(key)
        if origin is not None:
            message = f"{message} (set in {origin})"
        raise ConfigError(message, key=key or None) from None


def _build(values: Mapping[str, _Value], specs: Mapping[str, OptionSpec]) -> Config:
    all_sections = sections()
    typed: dict[str, dict[str, Any]] = {section: {} for section in all_sections}
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
    built = {name: _make_section(name, cls, typed[name], origins) for name, cls in all_sections.items()}
    core = {name: built.pop(name) for name in CORE_SECTIONS}
    try:
        return Config(**core, **top, components=built, origins=origins)
    except ConfigError as error:
        origin = origins.get(error.key or "")
        if origin is None:
            raise
        raise ConfigError(f"{error} (set in {origin})", key=error.key) from None


def _where(origin: str, spec: OptionSpec) -> str:
    if origin.startswith(ENV_PREFIX) or origin.startswith("--"):
        return f"{origin} ({spec.key})"
    return f"{origin}: {spec.key}"


SectionT = TypeVar("SectionT")


def _options_of(table: str, cls: type[Any], name: str, origin: str) -> OptionSpec:
    """The option ``name`` of ``cls`` (as table ``table``) for a plain mapping or ``-o KEY=VALUE``;
    unknown names and secret values (command lines are readable by every user) are errors."""
    specs = {spec.name: spec for spec in _specs_of(table, cls)}
    spec = specs.get(name)
    if spec is None:
        # Only options renamed (not moved) say so: a Kafka option renamed when [kafka] became [sinks.kafka].
        old = next((key for key in (f"{table}.{name}", f"kafka.{name}") if key in RENAMED), None)
        renamed = None if old is None else _renamed(old)
        hint = f" ({renamed})" if renamed else _suggest(name, list(specs))
        raise ConfigError(f"unknown key {name!r} in {origin}{hint}", key=f"{table}.{name}")
    if spec.secret:
        raise ConfigError(
            f"{name}: secrets are not accepted as values (in {origin}); put it in a file "
            f"({name}_file) or an environment variable ({name}_env)",
            key=spec.key,
        )
    return spec


def section_from_mapping(
    cls: type[SectionT], mapping: Mapping[str, Any], origin: str, *, from_strings: bool = False
) -> SectionT:
    """One table's options from a plain mapping of option names (``-o KEY=VALUE`` pairs, a table
    of another file), converted like the loader converts them."""
    table: str = getattr(cls, "SECTION")  # noqa: B009 - mypy cannot see the ClassVar of a TypeVar
    typed: dict[str, Any] = {}
    for name, value in mapping.items():
        spec = _options_of(table, cls, name, origin)
        try:
            typed[name] = convert(spec, value, from_string=from_strings)
        except ValueError as error:
            raise ConfigError(f"{name}: {error} (in {origin})", key=spec.key) from None
    return cls(**typed, origin=origin)  # type: ignore[call-arg]


def option_overrides(table: str, pairs: Collection[str], origin: str) -> dict[str, str]:
    """``KEY=VALUE`` strings naming options of ``table`` as dotted-key overrides."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"{pair!r} in {origin}: expected KEY=VALUE", key=f"{table}.{name}")
        out[_options_of(table, sections()[table], name, origin).key] = value
    return out


def with_overrides(config: Config, overrides: Mapping[str, object]) -> Config:
    """A copy of ``config`` with dotted-key overrides applied and validated (tests, programmatic use)."""
    specs = _specs_by_key()
    changes: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        spec = specs.get(key)
        if spec is None:
            raise _unknown_key(f"unknown option {key!r}", key, specs)
        try:
            converted = convert(spec, value, from_string=isinstance(value, str))
        except ValueError as error:
            raise ConfigError(f"{key}: {error}", key=key) from None
        if spec.section is None:
            top[spec.name] = converted
        else:
            changes.setdefault(spec.section, {})[spec.name] = converted
    core: dict[str, Any] = {}
    components = dict(config.components)
    for table, options in changes.items():
        if table in CORE_SECTIONS:
            core[table] = _replace_section(table, getattr(config, table), options)
        else:
            components[table] = _replace_section(table, components[table], options)
    return replace(config, **core, **top, components=components)


def _replace_section(table: str, current: Any, changes: Mapping[str, Any]) -> Any:
    values = {f.name: getattr(current, f.name) for f in fields(current)}
    values.update(changes)
    return _make_section(table, type(current), values, {})


# -- command-line flags ----------------------------------------------------------------------------


def add_cli_arguments(
    parser: argparse.ArgumentParser, *, config_flag: bool = True, sections: Collection[str] | None = None
) -> None:
    """A ``--section-option`` flag for every option (secrets excepted), plus ``--config PATH``;
    ``sections``: only the options of these tables (``publish`` and ``tail``: sinks.kafka).

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
        if spec.secret or (sections is not None and spec.section not in sections):
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
    if sections is None:
        _add_renamed_flags(parser)


def _flag_of(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")


class _RenamedFlag(argparse.Action):
    """A flag of the layout before issue 11: an error naming its replacement (``const``)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(f"{option_string}: {self.const}")


def _add_renamed_flags(parser: argparse.ArgumentParser) -> None:
    specs = _specs_by_key()
    old_keys = [
        *RENAMED,
        *(
            f"{old}.{spec.name}"
            for old, table in _MOVED_SECTIONS.items()
            for spec in specs.values()
            if spec.section == table
        ),
    ]
    for old in old_keys:
        new, _, how = (_new_key(old) or "").partition(" ")  # how: '(add "syslog")' for a switch
        spec = specs.get(new)
        renamed = {
            _flag_of(old): f"renamed {spec.flag}{' ' + how if how else ''}"
            if spec is not None
            else str(_renamed(old))
        }
        if old == "k8s_events.enabled":  # a switch that became a list entry: say how
            flag = _flag_of(old)
            renamed[flag] = (
                "renamed: list k8s_events in --sinks-enabled after the first sink, "
                "e.g. --sinks-enabled kafka,k8s_events"
            )
            renamed[flag.replace("--", "--no-", 1)] = "renamed: leave k8s_events out of --sinks-enabled"
        if spec is not None and _inner_types(spec.type)[0] is bool:
            renamed[_flag_of(old).replace("--", "--no-", 1)] = "renamed " + spec.flag.replace(
                "--", "--no-", 1
            )
        for flag, message in renamed.items():
            with contextlib.suppress(argparse.ArgumentError):  # never shadow a current flag
                parser.add_argument(
                    flag,
                    action=_RenamedFlag,
                    nargs="?",
                    const=message,
                    help=argparse.SUPPRESS,
                    dest=argparse.SUPPRESS,
                )


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
