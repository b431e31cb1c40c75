"""The event JSON schema, compiled once (jsonschema.validate() recompiles it on every call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

_SCHEMA_DIR = Path(__file__).resolve().parents[1] / "parsers" / "schema"
SCHEMA = json.loads((_SCHEMA_DIR / "oom-event.v1.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def validate(event: dict[str, Any]) -> None:
    VALIDATOR.validate(event)


K8S_EVENT_SCHEMA = json.loads((_SCHEMA_DIR / "k8s-event.v1.json").read_text())
K8S_EVENT_VALIDATOR = Draft202012Validator(K8S_EVENT_SCHEMA)
INCIDENT_SCHEMA = json.loads((_SCHEMA_DIR / "incident.v1.json").read_text())
INCIDENT_VALIDATOR = Draft202012Validator(INCIDENT_SCHEMA)


def validate_k8s_event(event: dict[str, Any]) -> None:
    K8S_EVENT_VALIDATOR.validate(event)


def validate_incident(event: dict[str, Any]) -> None:
    INCIDENT_VALIDATOR.validate(event)
