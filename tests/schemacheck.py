"""The machinery of the one schema check every test's events go through (used by tests/conftest.py).

``SchemaCheck`` wraps the places events are made (``EVENT_MAKERS``) and the ``submit`` of every
``Sink`` subclass, validates each event with ``eventschema.validate_any`` and remembers failures.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jsonschema
from eventschema import validate_any

from parsers.k8s import SignalTracker
from parsers.oom import Assembler
from streamer.enrich.enricher import Enricher
from streamer.enrich.incidents import Correlator
from streamer.sinks.base import Sink

# (class, method): methods that return an event or a list of events.
EVENT_MAKERS: tuple[tuple[type[Any], str], ...] = (
    (Assembler, "feed"),
    (Assembler, "tick"),
    (Assembler, "flush"),
    (SignalTracker, "from_object"),
    (SignalTracker, "from_pod"),
    (SignalTracker, "from_event_object"),
    (Enricher, "__call__"),
    (Enricher, "enrich_signal"),
    (Correlator, "observe"),
    (Correlator, "tick"),
    (Correlator, "flush"),
)


class SchemaCheck:
    """Wraps the event makers and sinks; remembers every failure, because the code under test may
    catch the exception (the tracker turns any error into a counted bad object, a pipeline task
    logs it): the test then fails at teardown all the same."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, result: Any, where: str) -> None:
        for event in result if isinstance(result, list) else [result]:
            try:
                validate_any(event)
            except (jsonschema.ValidationError, ValueError) as error:
                self.failures.append(f"{where}: {error}")
                raise

    def wrap(self, method: Callable[..., Any], where: str) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def checked_async(*args: Any, **kwargs: Any) -> Any:
                result = await method(*args, **kwargs)
                self.check(result, where)
                return result

            return checked_async

        @functools.wraps(method)
        def checked(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            self.check(result, where)
            return result

        return checked

    def wrap_submit(self, method: Callable[..., Any], where: str) -> Callable[..., Any]:
        @functools.wraps(method)
        async def submit(sink: Sink, event: Any, *args: Any, **kwargs: Any) -> Any:
            self.check(event, where)
            return await method(sink, event, *args, **kwargs)

        return submit


def sink_classes() -> list[type[Sink]]:
    """Every subclass of Sink defined so far (the service's and the tests')."""
    found: list[type[Sink]] = []
    pending = list(Sink.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def install(checker: SchemaCheck, patch: Any) -> None:
    """Wrap every event maker and every sink's ``submit`` (``patch``: a pytest MonkeyPatch)."""
    for cls, name in EVENT_MAKERS:
        patch.setattr(cls, name, checker.wrap(getattr(cls, name), f"{cls.__name__}.{name}"))
    for cls in sink_classes():
        if "submit" in vars(cls):
            patch.setattr(cls, "submit", checker.wrap_submit(vars(cls)["submit"], f"{cls.__name__}.submit"))
