"""Every counter the code increments is declared by its component (parsers/telemetry.py).

The scan reads the source of streamer/ and parsers/ (AST, not regular expressions): every write
to a tally (``counts["key"] += 1``, ``self.counts[...] = n``, ``stats["..."]``...) and every read of
``<x>.counts["..."]``. A literal key must be declared by a ``Telemetry`` the module defines or
imports; an f-string key (``f"errors_http_{status}"``) must match a declared pattern
(``"errors_http_{}"``). Keys computed otherwise are checked at run time by ``Tally``.
A misspelled counter fails here with its file, line and key.
"""

from __future__ import annotations

import ast
import importlib
import pickle
from collections import Counter
from pathlib import Path

import pytest

from parsers.telemetry import Count, Tally, Telemetry, UndeclaredCountError

ROOT = Path(__file__).resolve().parents[2]
# Names under which components keep a tally (attributes or local variables).
TALLY_NAMES = {"counts", "_counts", "skipped", "stats", "bounds", "records_by_format"}


def _tally_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _key(node: ast.expr) -> tuple[str, bool] | None:
    """(key, is_pattern) of a literal or f-string subscript; None for a computed key."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, False
    if isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif not parts or parts[-1] != "{}":
                parts.append("{}")
        return "".join(parts), True
    return None


def counted_keys(path: Path) -> list[tuple[int, str, bool, bool]]:
    """(line, key, is_pattern, written) of every tally use in ``path`` with a literal or f-string key."""
    tree = ast.parse(path.read_text(), str(path))
    written: set[int] = set()
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.AugAssign):
            targets = [node.target]
        elif isinstance(node, ast.Assign):
            targets = list(node.targets)
        written.update(id(target) for target in targets if isinstance(target, ast.Subscript))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Subscript):
            continue
        name = _tally_name(node.value)
        if name not in TALLY_NAMES:
            continue
        # Writes to any tally; reads only through an attribute (``pipeline.counts["..."]``): a
        # local ``skipped`` read may be a plain summary dict.
        if id(node) not in written and not (isinstance(node.value, ast.Attribute) and name == "counts"):
            continue
        key = _key(node.slice)
        if key is not None:
            found.append((node.lineno, *key, id(node) in written))
    return found


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def declarations_in(path: Path) -> list[Telemetry]:
    module = importlib.import_module(_module_name(path))
    return [value for value in vars(module).values() if isinstance(value, Telemetry)]


def _declared(declarations: list[Telemetry], key: str, is_pattern: bool) -> bool:
    if is_pattern:
        return any(count.key == key for telemetry in declarations for count in telemetry)
    return any(telemetry.declares(key) for telemetry in declarations)


SOURCES = sorted(p for top in ("streamer", "parsers") for p in (ROOT / top).rglob("*.py"))


def test_every_counted_key_is_declared_by_its_component() -> None:
    problems = []
    scanned = 0
    everywhere = [t for path in SOURCES if counted_keys(path) for t in declarations_in(path)]
    for path in SOURCES:
        uses = counted_keys(path)
        if not uses:
            continue
        declarations = declarations_in(path)
        names = ", ".join(t.component for t in declarations) or "none"
        for line, key, is_pattern, written in uses:
            scanned += 1
            # A count is made by its component; a read (``pipeline.counts[...]``) may be anyone's.
            if not _declared(declarations if written else everywhere, key, is_pattern):
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: counts[{key!r}] is not declared "
                    f"(Telemetry in this module: {names})"
                )
    assert not problems, "undeclared counters:\n" + "\n".join(problems)
    assert scanned >= 150  # the scan finds the code's counters (about 180 when this was written)


def test_the_scan_names_a_misspelled_counter(tmp_path: Path) -> None:
    source = tmp_path / "component.py"
    source.write_text(
        "class C:\n"
        "    def f(self, status: int) -> None:\n"
        '        self.counts["lines"] += 1\n'
        '        self.counts["lnies"] += 1\n'
        '        self.counts[f"errors_http_{status}"] += 1\n'
        '        self.counts[f"error_http_{status}"] += 1\n'
    )
    declared = [Telemetry("c", (Count("lines", "l"), Count("errors_http_{}", "e")))]
    uses = counted_keys(source)
    assert [use[:3] for use in uses] == [
        (3, "lines", False),
        (4, "lnies", False),
        (5, "errors_http_{}", True),
        (6, "error_http_{}", True),
    ]
    assert [key for _, key, pattern, _ in uses if not _declared(declared, key, pattern)] == [
        "lnies",
        "error_http_{}",
    ]


def test_a_tally_refuses_an_undeclared_key_and_accepts_patterns() -> None:
    telemetry = Telemetry(
        "demo", (Count("lines", "l"), Count("errors_http_{}", "e"), Count("{}_dropped", "d"))
    )
    tally = telemetry.tally()
    tally["lines"] += 2
    tally["errors_http_503"] += 1
    tally["kafka_dropped"] += 1
    assert tally == Counter({"lines": 2, "errors_http_503": 1, "kafka_dropped": 1})
    assert tally["lines"] == 2 and isinstance(tally, Tally)
    with pytest.raises(UndeclaredCountError, match="demo counted 'lnies'"):
        tally["lnies"] += 1
    with pytest.raises(UndeclaredCountError):
        tally["errors_http_"] += 1  # the varying part may not be empty
    assert "lnies" not in tally
    tally["set_directly"] = 1  # bypasses the check; the metrics layer reports it
    assert tally.undeclared() == ["set_directly"]
    del tally["set_directly"]
    for twin in (tally.copy(), pickle.loads(pickle.dumps(tally))):
        assert twin == tally and twin.telemetry == telemetry
        with pytest.raises(UndeclaredCountError):
            twin["lnies"] += 1


def test_a_key_declared_twice_must_agree() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Telemetry("x", (Count("a", "h", bound="b1"), Count("a", "h", bound="b2")))
    merged = Telemetry("x", (Count("a", "h"),)) + Telemetry("y", (Count("a", "other help"), Count("b", "h")))
    assert merged.keys == ("a", "b")


def test_every_declared_bound_is_described_and_every_metric_named_well() -> None:
    from streamer.metrics import BOUNDS

    declarations = {t.component: t for path in SOURCES for t in declarations_in(path)}
    assert len(declarations) >= 20
    problems = []
    for telemetry in declarations.values():
        for count in telemetry:
            if count.bound and count.bound not in BOUNDS:
                problems.append(
                    f"{telemetry.component}: {count.key!r} reports undescribed bound {count.bound!r}"
                )
            if count.metric and (
                not count.metric.startswith("oomstream_") or count.metric.endswith("_total")
            ):
                problems.append(f"{telemetry.component}: {count.key!r} has metric {count.metric!r}")
            if not count.help.strip():
                problems.append(f"{telemetry.component}: {count.key!r} has no help text")
    assert not problems, "\n".join(problems)
    # Every bound described is reported by some component's key.
    reported = {count.bound for telemetry in declarations.values() for count in telemetry}
    assert set(BOUNDS) <= reported, set(BOUNDS) - reported
