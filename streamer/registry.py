"""The component registry: every source and sink the node service can run, one line each.

A component is one module holding three things (docs/adding-a-component.md has the smallest real
example):

- an options class: a frozen dataclass whose fields are the options of its table
  (``[sources.kmsg]``, ``[sinks.kafka]``), each with a default, its unit in its name and a help
  text in ``field(metadata=option_help(...))``; ``__post_init__`` rejects bad values by raising
  ``OptionError(field_name, message)``;
- ``async def build(options, context) -> ...``: the running component (sources: a list of
  ``Source``; sinks: a ``Sink``), built from its options and what ``BuildContext`` hands out;
- ``COMPONENT = Component(options=..., build=..., help=...)``.

The table below maps each table name to ``"module"`` (the attribute ``COMPONENT``) or
``"module:ATTRIBUTE"``. The configuration loader imports a module when it reads the options
(``run`` and ``check-config`` only; ``parse`` never imports the registry), so a component module
imports its heavy client libraries inside ``build``, not at the top.

The configuration, environment variables (``OOMSTREAM_SOURCES_KMSG_PATH``) and flags
(``--sources-kmsg-path``) are all derived from the options class; nothing else declares them.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from streamer.checkpoint import CheckpointStore
    from streamer.config import Config
    from streamer.kafka.options import KafkaOptions
    from streamer.metrics import Metrics
    from streamer.sinks.base import DeliveryCallback

ComponentKind = Literal["sources", "sinks"]
OptionsT = TypeVar("OptionsT")
BuiltT = TypeVar("BuiltT")

# table name -> where its Component is. Adding a component: one module, one line here.
COMPONENTS: Mapping[str, str] = {
    "sources.auto": "streamer.sources.select",
    "sources.kmsg": "streamer.sources.kmsg",
    "sources.journald": "streamer.sources.journald",
    "sources.files": "streamer.sources.files",
    "sources.stdin": "streamer.sources.files:STDIN_COMPONENT",
    "sources.syslog": "streamer.sources.syslog",
    "sources.http": "streamer.sources.http",
    "sources.kafka_lines": "streamer.sources.kafka_lines",
    "sinks.kafka": "streamer.sinks.kafka_component",
    "sinks.stdout": "streamer.sinks.stdout",
    "sinks.file": "streamer.sinks.file",
    "sinks.k8s_events": "streamer.sinks.k8s_events",
}


@dataclass(frozen=True, slots=True)
class Component(Generic[OptionsT, BuiltT]):
    """A registered component: its options class, how to build it, one line of help."""

    options: type[OptionsT]
    build: Callable[[OptionsT, BuildContext], Awaitable[BuiltT]]
    help: str
    # Sinks: deliveries can fail for a while (a broker down), so failed events wait in the spool.
    spools: bool = False
    # Sinks: the share of pipeline.shutdown_timeout_seconds each of its two bounded waits at close
    # (a last flush, then stopping its client) may use; the pipeline's drain gets what is left.
    close_share: float = 0.0


@dataclass
class BuildContext:
    """What components share, handed to every ``build``."""

    config: Config  # the whole configuration: other components' options, [kubernetes], ...
    node_name: str  # this node's name (events' ``host``)
    checkpoints: CheckpointStore  # sources load their resume state here by their own key
    metrics: Metrics  # the process's metrics (``metrics.registry`` for Prometheus collectors)
    on_delivery: DeliveryCallback  # sinks: report each event's outcome here
    state_directory: str  # a component's own files go in a subdirectory named after it
    monotonic: Callable[[], float] = field(default=time.monotonic)  # deadlines
    wall_clock: Callable[[], float] = field(default=time.time)  # timestamps

    def options(self, table: str, cls: type[OptionsT]) -> OptionsT:
        """Another component's options (``auto`` reads those of kmsg, journald and files)."""
        return self.config.options(table, cls)

    def kafka_client(self) -> KafkaOptions | None:
        """The Kafka connection settings ([sinks.kafka]: brokers, TLS, SASL) when brokers are
        configured, else None; a Kafka input uses the same cluster and credentials as the sink."""
        from streamer.sinks.kafka_component import KafkaSinkOptions, options_for_clients

        settings = self.config.options("sinks.kafka", KafkaSinkOptions)
        return options_for_clients(settings) if settings.configured else None


def kind_of(table: str) -> ComponentKind:
    kind = table.split(".", 1)[0]
    if kind not in ("sources", "sinks"):
        raise ValueError(f"registry entry {table!r} is not under sources. or sinks.")
    return kind  # type: ignore[return-value]


def names(kind: ComponentKind) -> list[str]:
    """The registered component names of one kind, in registry order (``kmsg``, ``files``...)."""
    return [table.split(".", 1)[1] for table in COMPONENTS if kind_of(table) == kind]


def component(table: str) -> Component[Any, Any]:
    """The registered component of ``table`` (``"sources.kmsg"``), its module imported now."""
    target = COMPONENTS[table]
    module_name, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module_name), attribute or "COMPONENT")
    if not isinstance(found, Component):
        raise TypeError(f"{target} is not a Component (registry entry {table!r})")
    return found
