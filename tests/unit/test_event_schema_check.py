"""The one schema check (tests/conftest.py, eventschema.validate_any) reaches every source and sink.

A registry of streamer/sources/ and streamer/sinks/: every module is listed with the checked place
its events come from, so a new source or sink fails here until it is routed through one (or the
check is taught a new place). And the check itself can fail: a wrong event handed to any sink, or
made by the tracker, raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import pkgutil
from pathlib import Path

import jsonschema
import pytest
from eventschema import validate_any
from k8sfake.client import plain_config
from k8sfake.objects import make_event
from schemacheck import EVENT_MAKERS, SchemaCheck, sink_classes

import streamer.sinks
import streamer.sources
from parsers.events import K8sEvent, Source
from parsers.k8s import SignalTracker
from parsers.oom import Assembler
from streamer.kube.api import KubeApi
from streamer.sinks.base import Sink
from streamer.sinks.file import FileSink
from streamer.sinks.k8s_events import K8sEventSink, K8sEventsOptions
from streamer.sinks.stdout import StdoutSink

# Each source module -> the checked maker its events come from (None: no events of its own).
SOURCE_EVENTS_FROM: dict[str, type | None] = {
    "base": None,  # the Source protocol
    "select": None,  # chooses a kernel source
    "signals": None,  # the SignalSource protocol
    "files": Assembler,  # kernel records -> the pipeline's Assembler
    "journald": Assembler,
    "kmsg": Assembler,
    "listeners": None,  # what the syslog and HTTP listeners share
    "syslog": Assembler,  # shipped kernel records -> the pipeline's per-host Assemblers
    "http": Assembler,
    "kafka_lines": Assembler,  # shipped kernel records -> its own per-(partition, host) Assemblers
    "k8s_objects": SignalTracker,  # Kubernetes objects -> SignalTracker
    "k8s_watch": SignalTracker,
    "kafka_objects": SignalTracker,
}
SINK_MODULES = {"base", "fanout", "file", "k8s_events", "kafka", "kafka_component", "stdout"}
# Imported before the autouse check wraps every Sink subclass (at each test's start): run alone,
# this file otherwise imported kafka and fanout only inside the test, and found them unwrapped.
for _module in sorted(SINK_MODULES):
    importlib.import_module(f"streamer.sinks.{_module}")


def modules(package: object) -> set[str]:
    return {info.name for info in pkgutil.iter_modules(package.__path__)}  # type: ignore[attr-defined]


def test_every_source_module_is_registered_with_a_checked_event_maker() -> None:
    assert modules(streamer.sources) == set(SOURCE_EVENTS_FROM), (
        "a source module was added or removed: say in SOURCE_EVENTS_FROM where its events are made "
        "(a class in schemacheck.EVENT_MAKERS), so tests/conftest.py checks them against the schema"
    )
    checked = {cls for cls, _ in EVENT_MAKERS}
    for name, maker in SOURCE_EVENTS_FROM.items():
        if maker is None:
            continue
        assert maker in checked, name
        text = Path(inspect.getfile(importlib.import_module(f"streamer.sources.{name}"))).read_text()
        if maker is SignalTracker:
            # it hands objects to the tracker (directly or through the shared line decoder)
            assert "SignalTracker" in text or "ObjectLineDecoder" in text, name
        else:
            # it yields kernel records, which only the assembler turns into events
            assert "KernelRecord" in text or "FileSource" in text, name
        assert "K8sEvent(" not in text and "OomEvent(" not in text, f"{name} builds events itself"


def test_every_sink_module_and_class_is_checked() -> None:
    assert modules(streamer.sinks) == SINK_MODULES, "a sink module was added: add it here"
    for name in SINK_MODULES:
        importlib.import_module(f"streamer.sinks.{name}")
    service_sinks = [cls for cls in sink_classes() if cls.__module__.startswith("streamer.sinks.")]
    assert {cls.__name__ for cls in service_sinks} >= {
        "KafkaSink",
        "FileSink",
        "StdoutSink",
        "JsonLinesSink",
        "K8sEventSink",
    }
    for cls in service_sinks:
        submit = cls.submit  # the nearest definition, as a call on an instance would find it
        assert hasattr(submit, "__wrapped__"), f"{cls.__name__}.submit is not schema-checked"


def bad_signal() -> K8sEvent:
    """A signal whose position carries a key the schema does not know (the issue-15 bug's shape)."""
    [signal] = SignalTracker().from_object(
        make_event(reason="OOMKilling", message="Killed process 1 (x) total-vm:1kB"),
        source=Source("k8s_file", "k8s_json", {"path": "/x", "offset": 10, "line": 1}),
    )
    return dataclasses.replace(signal, source=Source("k8s_file", "k8s_json", {"path": "/x", "row": 1}))


@pytest.mark.parametrize("sink_class", [StdoutSink, FileSink, K8sEventSink])
async def test_a_wrong_event_handed_to_a_sink_fails_the_test(
    sink_class: type[Sink], tmp_path: Path, schema_check: SchemaCheck
) -> None:
    if sink_class is StdoutSink:
        sink: Sink = StdoutSink(io.BytesIO(), on_delivery=lambda result: None)  # type: ignore[arg-type]
    elif sink_class is FileSink:
        sink = FileSink(str(tmp_path / "out.jsonl"), on_delivery=lambda result: None)
    else:
        # never started: the check runs before submit, which would only queue
        api = KubeApi(plain_config(tmp_path, "http://127.0.0.1:9"))
        sink = K8sEventSink(K8sEventsOptions(), api, "node-a", on_delivery=lambda result: None)
    async with contextlib.AsyncExitStack() as stack:
        if sink_class is not K8sEventSink:
            await stack.enter_async_context(sink)
        with pytest.raises(jsonschema.ValidationError, match="row"):
            await sink.submit(bad_signal())
    assert len(schema_check.failures) == 1 and "submit" in schema_check.failures[0]
    schema_check.failures.clear()


def test_a_wrong_event_from_the_tracker_fails_the_test_even_when_the_tracker_swallows_it(
    schema_check: SchemaCheck,
) -> None:
    """The tracker turns every error into a counted bad object (``from_object`` never raises), so
    the check's exception is swallowed there: the remembered failure still fails the test."""
    tracker = SignalTracker()
    got = tracker.from_object(
        make_event(reason="OOMKilling", message="Killed process 1 (x) total-vm:1kB"),
        source=Source("k8s_file", "k8s_json", {"path": "/x", "row": 1}),
    )
    assert got == [] and tracker.counts["bad_object"] == 1
    assert schema_check.failures and "row" in schema_check.failures[0]
    schema_check.failures.clear()


def test_validate_any_knows_every_type_and_refuses_unknown_ones() -> None:
    with pytest.raises(ValueError, match="unknown type"):
        validate_any({"type": "oom_kill_v2"})
