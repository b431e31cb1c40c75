"""Fixtures for every test.

``_every_event_meets_its_schema`` (autouse): every event a test sees is validated against the
schema of its type by ``eventschema.validate_any``, at the places events are made and where they
leave: the assembler (every kernel source), the Kubernetes signal tracker (every Kubernetes
source: API watch, object files, the Kafka objects topic), the enricher, the correlator, and the
``submit`` of every ``Sink`` subclass (found at run time, test sinks included). A test that hands a
sink a deliberately broken event says so with ``@pytest.mark.schema_exempt("why")``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
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


@pytest.fixture(autouse=True)
def _every_event_meets_its_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("schema_exempt") is not None:
        yield
        return
    checker = SchemaCheck()
    request.node.schema_check = checker
    with pytest.MonkeyPatch.context() as patch:
        for cls, name in EVENT_MAKERS:
            patch.setattr(cls, name, checker.wrap(getattr(cls, name), f"{cls.__name__}.{name}"))
        for cls in sink_classes():
            if "submit" in vars(cls):
                patch.setattr(cls, "submit", checker.wrap_submit(vars(cls)["submit"], f"{cls.__name__}.submit"))
        yield
    if checker.failures:
        pytest.fail(
            f"{len(checker.failures)} event(s) failed their schema; the first: {checker.failures[0]}",
            pytrace=False,
        )


@pytest.fixture
def schema_check(request: pytest.FixtureRequest) -> SchemaCheck:
    """The running check, for a test that expects a failure (it clears ``failures`` after)."""
    checker: SchemaCheck = request.node.schema_check
    return checker
