"""Log output: one JSON object per line (or readable text), and rate limiting of repeated warnings.

JSON lines carry ``time`` (RFC 3339 UTC, milliseconds), ``level``, ``logger``, ``message``, every
``extra={...}`` field of the call, and ``exception``/``stack`` when present; log collectors on the
node (Fluent Bit, Vector, the kubelet's log files) can index them without a parser.

Rate limiting: while Kafka is down, every failed send would otherwise log the same warning, drowning
everything else. ``RateLimitFilter`` lets a message through at most once per interval per *key*
(by default the logger plus the message template, so the same warning about different objects
counts as one); the next message that passes carries ``suppressed`` = how many were dropped
meanwhile, so nothing disappears without a trace. ``extra={"rate_key": ...}`` chooses another key,
``extra={"rate_limit": False}`` exempts a call. Only WARNING and above are limited.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName", "rate_key", "rate_limit"}
)
_INSTALLED = "_oomstream_handler"  # marks the handler setup_logging installed, so a re-run replaces it


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    held = getattr(record, "suppressed", 0)
    if held:
        interval = getattr(record, "suppressed_interval_seconds", 0)
        message += f" (suppressed {held} similar in the last {interval:g}s)"
    return message


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # repr() for anything orjson cannot encode: a log line must never fail to be written.
        return orjson.dumps(entry, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record.created)} {record.levelname:<7} {record.name}: {_message(record)}"
        extras = _extras(record)
        extras.pop("suppressed", None)  # already in the message
        extras.pop("suppressed_interval_seconds", None)
        if extras:
            text += " " + " ".join(f"{key}={value!r}" for key, value in extras.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class RateLimiter:
    """At most one pass per ``interval_seconds`` per key; counts what it holds back."""

    def __init__(
        self,
        interval_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._max_keys = max_keys
        self._state: OrderedDict[object, list[float | int]] = OrderedDict()  # key -> [last pass, held back]
        self.suppressed_total = 0

    def check(self, key: object) -> int | None:
        """None: hold this one back. Otherwise let it pass; the value is how many were held back
        since the last one that passed."""
        now = self._clock()
        state = self._state.get(key)
        if state is not None and now - state[0] < self.interval_seconds:
            state[1] += 1
            self.suppressed_total += 1
            return None
        held = int(state[1]) if state is not None else 0
        self._state[key] = [now, 0]
        self._state.move_to_end(key)
        if len(self._state) > self._max_keys:
            # Keys built from data must not grow memory without bound; forgetting the oldest key
            # only means its next message passes early.
            self._state.popitem(last=False)
        return held


class RateLimitFilter(logging.Filter):
    """A handler filter applying ``RateLimiter`` to WARNING and above (see the module doc)."""

    def __init__(self, interval_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.limiter = RateLimiter(interval_seconds, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "rate_limit", True) is False:
            return True
        key = getattr(record, "rate_key", None) or (record.name, str(record.msg))
        held = self.limiter.check(key)
        if held is None:
            return False
        if held:
            record.suppressed = held
            record.suppressed_interval_seconds = self.limiter.interval_seconds
        return True


def setup_logging(
    level: str = "INFO",
    fmt: str = "json",
    *,
    stream: TextIO | None = None,
    rate_limit_seconds: float = 60.0,
) -> logging.Handler:
    """Route every log record to ``stream`` (default stderr) in ``fmt``; safe to call again."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _INSTALLED, False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if rate_limit_seconds > 0:
        handler.addFilter(RateLimitFilter(rate_limit_seconds))
    setattr(handler, _INSTALLED, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return handler
