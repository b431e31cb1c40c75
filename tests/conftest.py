"""Fixtures for every test.

``_every_event_meets_its_schema`` (autouse): every event a test sees is validated against the
schema of its type by ``eventschema.validate_any``, at the places events are made and where they
leave: the assembler (every kernel source), the Kubernetes signal tracker (every Kubernetes
source: API watch, object files, the Kafka objects topic), the enricher, the correlator, and the
``submit`` of every ``Sink`` subclass (found at run time, test sinks included). A test that hands a
sink a deliberately broken event says so with ``@pytest.mark.schema_exempt("why")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from schemacheck import SchemaCheck, install


@pytest.fixture(autouse=True)
def _every_event_meets_its_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("schema_exempt") is not None:
        yield
        return
    checker = SchemaCheck()
    request.node.schema_check = checker
    with pytest.MonkeyPatch.context() as patch:
        install(checker, patch)
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
