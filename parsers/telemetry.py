"""Typed telemetry: what a component counts, declared once beside its code.

A component declares its tally as a ``Telemetry``: one ``Count`` per key it counts under (help
text; optionally a metric of its own, or the size bound the key reports), and counts into the
``Tally`` that declaration makes. ``streamer.metrics`` registers the Prometheus series from the
declarations, so every declared key is visible (zero until counted) and nothing undeclared can
be: a ``Tally`` refuses a key its component did not declare (``UndeclaredCountError`` the first
time the key is read or incremented), and ``tests/unit/test_telemetry_declared.py`` reads every
``counts["..."]`` in the code and fails naming the file, line and key that no declaration holds.

Keys made at run time (an HTTP status, a sink's name) are declared as patterns: ``"{}"`` stands
for the part that varies, e.g. ``Count("errors_http_{}", ...)``.

Like the rest of ``parsers``, this is pure: plain data and a ``collections.Counter``, so hot
paths keep counting at dict speed (the check runs only when a key is first seen).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

PLACEHOLDER = "{}"


class UndeclaredCountError(Exception):
    """A component counted under a key its ``Telemetry`` does not declare (a programming error)."""


@dataclass(frozen=True, slots=True)
class Count:
    """One key of a component's tally."""

    key: str  # what the code counts under; "{}" marks a part made at run time
    help: str
    metric: str = ""  # a metric of its own (name without _total); "": the tally's family, by key
    bound: str = ""  # a size bound this key reports in oomstream_bound_hits_total{bound}

    @property
    def is_pattern(self) -> bool:
        return PLACEHOLDER in self.key

    def matches(self, key: str) -> bool:
        if not self.is_pattern:
            return key == self.key
        head, _, tail = self.key.partition(PLACEHOLDER)
        return len(key) > len(head) + len(tail) and key.startswith(head) and key.endswith(tail)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The declared tally of one component (``component`` names it in errors)."""

    component: str
    counts: tuple[Count, ...]
    _by_key: dict[str, Count] = field(init=False, repr=False, compare=False, hash=False)
    _patterns: tuple[Count, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_key: dict[str, Count] = {}
        for count in self.counts:
            earlier = by_key.get(count.key)
            if earlier is not None and (earlier.metric, earlier.bound) != (count.metric, count.bound):
                raise ValueError(
                    f"{self.component}: key {count.key!r} declared twice with different metrics or bounds"
                )
            by_key.setdefault(count.key, count)
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_patterns", tuple(c for c in by_key.values() if c.is_pattern))

    def __iter__(self) -> Iterator[Count]:
        return iter(self._by_key.values())

    def __add__(self, other: Telemetry) -> Telemetry:
        """Both declarations as one tally (stages sharing a counter, a source wrapping a reader)."""
        return Telemetry(f"{self.component}+{other.component}", (*self.counts, *other.counts))

    def count(self, key: str) -> Count | None:
        """The declaration of ``key`` (a pattern's, for a key made at run time), or None."""
        found = self._by_key.get(key)
        if found is None:
            found = next((count for count in self._patterns if count.matches(key)), None)
        return found

    def declares(self, key: str) -> bool:
        return self.count(key) is not None

    @property
    def keys(self) -> tuple[str, ...]:
        """The fixed keys (patterns left out: their keys exist once counted)."""
        return tuple(key for key, count in self._by_key.items() if not count.is_pattern)

    @property
    def bounds(self) -> dict[str, str]:
        """Key -> bound name, for the keys that report a size bound."""
        return {key: count.bound for key, count in self._by_key.items() if count.bound}

    def tally(self, initial: Iterable[tuple[str, int]] = ()) -> Tally:
        return Tally(self, initial)


class Tally(Counter[str]):
    """A ``Counter`` that accepts only the keys its ``Telemetry`` declares."""

    def __init__(self, telemetry: Telemetry, initial: Iterable[tuple[str, int]] = ()) -> None:
        self.telemetry = telemetry
        super().__init__()
        for key, value in initial:
            self[key] += value

    def __missing__(self, key: str) -> int:
        # Called only while a key is absent (its first increment, or a read of a zero): the check
        # costs nothing once a key has been counted.
        if self.telemetry.count(key) is None:
            raise UndeclaredCountError(
                f"{self.telemetry.component} counted {key!r}, which its Telemetry does not declare"
            )
        return 0

    def undeclared(self) -> list[str]:
        """Keys set directly (``tally[key] = n`` bypasses the check) that are not declared."""
        return [key for key in list(self) if self.telemetry.count(key) is None]

    def copy(self) -> Tally:
        return Tally(self.telemetry, self.items())

    def __reduce__(self) -> tuple[object, ...]:  # Counter's passes only the counts
        return type(self), (self.telemetry, list(self.items()))
