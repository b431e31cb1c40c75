"""The event JSON schemas, compiled once, and the ONE check every test's events go through.

``validate_any`` validates any event (an ``oom_kill``, a ``k8s_*`` signal, an ``incident``, as a
dataclass or as its JSON form) against the schema of its ``type``. ``tests/conftest.py`` (with
``tests/schemacheck.py``) applies it
to every event a test sees: each one the assembler, the Kubernetes signal tracker, the enricher
or the correlator produces, and each one any sink is handed, so the events of every source and of
every sink are checked without a test having to ask (and a new source or sink cannot skip it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from parsers.events import EVENT_TYPE_INCIDENT, EVENT_TYPE_OOM_KILL, K8S_EVENT_TYPES

_SCHEMA_DIR = Path(__file__).resolve().parents[1] / "parsers" / "schema"
SCHEMA = json.loads((_SCHEMA_DIR / "oom-event.v1.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
K8S_EVENT_SCHEMA = json.loads((_SCHEMA_DIR / "k8s-event.v1.json").read_text())
K8S_EVENT_VALIDATOR = Draft202012Validator(K8S_EVENT_SCHEMA)
INCIDENT_SCHEMA = json.loads((_SCHEMA_DIR / "incident.v1.json").read_text())
INCIDENT_VALIDATOR = Draft202012Validator(INCIDENT_SCHEMA)

VALIDATORS = {
    EVENT_TYPE_OOM_KILL: VALIDATOR,
    EVENT_TYPE_INCIDENT: INCIDENT_VALIDATOR,
    **{kind: K8S_EVENT_VALIDATOR for kind in K8S_EVENT_TYPES},
}


def validate(event: dict[str, Any]) -> None:
    VALIDATOR.validate(event)


def validate_k8s_event(event: dict[str, Any]) -> None:
    K8S_EVENT_VALIDATOR.validate(event)


def validate_incident(event: dict[str, Any]) -> None:
    INCIDENT_VALIDATOR.validate(event)


def validate_any(event: object) -> dict[str, Any]:
    """Validate an event (dataclass or JSON dict) against the schema of its type; returns the dict.

    Raises ``jsonschema.ValidationError`` on a wrong shape, ``ValueError`` on an unknown type."""
    data: Any = event if isinstance(event, dict) else orjson.loads(orjson.dumps(event))
    if not isinstance(data, dict):
        raise ValueError(f"an event is a JSON object, not {type(data).__name__}")
    validator = VALIDATORS.get(data.get("type"))  # type: ignore[arg-type]
    if validator is None:
        raise ValueError(f"event of unknown type {data.get('type')!r}: no schema for it")
    validator.validate(data)
    return data
