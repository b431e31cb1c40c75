"""The event JSON schema, compiled once (jsonschema.validate() recompiles it on every call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "parsers" / "schema" / "oom-event.v1.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def validate(event: dict[str, Any]) -> None:
    VALIDATOR.validate(event)
