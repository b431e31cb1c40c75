"""Rows of log-search table exports: Kibana/Elasticsearch, Grafana Loki, Splunk.

Users copy kernel logs out of a search UI more often than off a node. The exports put each log
line in a table row beside the store's own columns:

- Kibana Discover (copied rows, or a saved search's CSV report): ``Mar 3, 2024 @ 09:15:02.118 |
  kernel | [  8812.004511] <msg>``; CSV ``"@timestamp","host.name","message"`` then
  ``"Mar 3, 2024 @ 09:15:02.118","node-1","[  8812.004511] <msg>"`` (Kibana's default
  ``dateFormat`` is ``MMM D, YYYY @ HH:mm:ss.SSS``).
- Grafana Loki: ``logcli query`` prints ``<RFC 3339> {<labels>} <line>``; Explore's "Download
  logs" (txt) and copied tables use tabs or ``|`` between time, labels and line.
- Splunk CSV export: ``"_time","host","source","_raw"`` with ``_raw`` the whole syslog line.
- JSON, one document a line: Elasticsearch hits (``_source`` with ECS ``@timestamp``,
  ``host.name``, ``process.name``, ``message``) and ``logcli --output=jsonl``.

All of them default to newest first. This module only recognises the layout and splits a row into
(time, host, program, message); the framer frames the message as a kernel line of its own (so a
``[seconds]`` stamp inside it gives the kernel time), and ``streamer.inputs`` puts the rows of a
table file back in log order before assembly.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from parsers.records import KernelRecord

# Column names by role, lower case (Kibana/ECS fields, Loki, Splunk, generic CSV).
TIME_COLUMNS = ("@timestamp", "_time", "timestamp", "time", "date", "datetime", "ts")
MESSAGE_COLUMNS = ("message", "_raw", "line", "log", "msg", "raw", "event.original", "content")
HOST_COLUMNS = (
    "host.name", "host", "hostname", "host.hostname", "agent.hostname", "kubernetes.node.name",
    "node", "nodename", "instance",
)  # fmt: skip
PROGRAM_COLUMNS = (
    "process.name", "program", "syslog.appname", "appname", "syslog_identifier",
    "log.syslog.appname", "ident",
)  # fmt: skip

_KIBANA_TIME = re.compile(r"([A-Z][a-z]{2}) (\d{1,2}), (\d{4}) @ (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2}|UTC)?$"
)
_US_TIME = re.compile(  # Splunk UI "3/3/24 9:15:02.118 AM"
    r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?: ?([AP]M))?$"
)
_EPOCH = re.compile(r"\d{10}(?:\d{3}|\d{6}|\d{9})?(?:\.\d+)?$")
_MONTHS = {
    name: index + 1
    for index, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
# logcli's default output: "<RFC 3339> {<labels>} <line>".
_LOGCLI = re.compile(r"(\d{4}-\d{2}-\d{2}T\S+) (\{[^}]*\}) (.*)$", re.DOTALL)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_LABEL_HOSTS = ("host", "hostname", "node", "nodename", "node_name", "instance")
_LABEL_PROGRAMS = ("syslog_identifier", "program", "appname")


@dataclass(frozen=True, slots=True)
class Layout:
    """Which cell holds what, from a CSV header line."""

    delimiter: str
    time: int | None
    message: int
    host: int | None
    program: int | None
    columns: int


@dataclass(frozen=True, slots=True)
class Row:
    time_text: str | None
    host: str | None
    program: str | None
    message: str


def _index(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


def header_layout(text: str) -> Layout | None:
    """A CSV/TSV header naming a time and a message column."""
    delimiter = "\t" if "\t" in text else ","
    if delimiter not in text:
        return None
    try:
        cells = next(csv.reader([text], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return None
    names = [cell.strip().strip('"').lower() for cell in cells]
    message = _index(names, MESSAGE_COLUMNS)
    time = _index(names, TIME_COLUMNS)
    if message is None or time is None:
        return None
    return Layout(
        delimiter, time, message, _index(names, HOST_COLUMNS), _index(names, PROGRAM_COLUMNS), len(names)
    )


def split_with_layout(text: str, layout: Layout) -> Row | None:
    try:
        cells = next(csv.reader([text], delimiter=layout.delimiter))
    except (csv.Error, StopIteration):
        return None
    if len(cells) < layout.columns:
        return None
    if len(cells) > layout.columns and layout.message == layout.columns - 1:
        # An unquoted message holding the delimiter: the rest of the row is the message.
        cells[layout.message] = layout.delimiter.join(cells[layout.message :])

    def cell(index: int | None) -> str | None:
        return cells[index].strip() or None if index is not None else None

    return Row(cell(layout.time), cell(layout.host), cell(layout.program), cells[layout.message])


def split_row(text: str) -> Row | None:
    """A row without a header: ``time | cells... | message`` (or tabs), or logcli's output.

    The first cell must read as a time. Single-token cells after it are the host (the first),
    the program (``kernel``, or a second token) or a Loki label set; the message is the rest.
    """
    logcli = _LOGCLI.match(text)
    if logcli is not None and parse_time(logcli.group(1), UTC) is not None:
        labels = dict(_LABEL.findall(logcli.group(2)))
        return Row(
            logcli.group(1), _first(labels, _LABEL_HOSTS), _first(labels, _LABEL_PROGRAMS), logcli.group(3)
        )
    for separator in (" | ", "\t", "|"):
        if separator in text:
            cells = text.split(separator)
            break
    else:
        return None
    time_text = cells[0].strip()
    if len(cells) < 2 or parse_time(time_text, UTC) is None:
        return None
    host: str | None = None
    program: str | None = None
    index = 1
    # Middle cells are single tokens (host, program) or a Loki label set; the message starts at
    # the first other cell and keeps any separator it holds ("GFP_KERNEL|__GFP_NOWARN").
    while index < len(cells) - 1:
        value = cells[index].strip()
        if value.startswith("{") and value.endswith("}"):
            labels = dict(_LABEL.findall(value))  # Loki labels in a copied Grafana table
            host = host or _first(labels, _LABEL_HOSTS)
            program = program or _first(labels, _LABEL_PROGRAMS)
        elif value == "kernel" or value.startswith("kernel["):
            program = "kernel"
        elif value and " " not in value and not value.startswith("["):
            if host is None:
                host = value
            else:
                program = program or value
        else:
            break
        index += 1
    message = separator.join(cells[index:])
    if separator == "|" and message.startswith(" "):
        message = message[1:]
    return Row(time_text, host, program, message)


def _first(labels: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((labels[name] for name in names if name in labels), None)


_JSON_HOSTS = ("host.name", "host.hostname", "hostname", "host", "agent.hostname", "kubernetes.node.name")
_JSON_PROGRAMS = (
    "process.name", "log.syslog.appname", "syslog.appname", "program", "syslog_identifier",
    "SYSLOG_IDENTIFIER",
)  # fmt: skip


def row_from_json(entry: dict[str, Any]) -> Row | None:
    """A JSON export's document: Elasticsearch hits or ``_source`` documents (ECS fields, nested
    or dotted), ``logcli --output=jsonl`` (``line``, ``timestamp``, ``labels``)."""
    source = entry.get("_source")
    if isinstance(source, dict):
        entry = source
    message = _json_field(entry, ("message", "line", "_raw", "log", "msg", "event.original"))
    if not isinstance(message, str):
        return None
    time = _json_field(entry, ("@timestamp", "timestamp", "_time", "time", "ts"))
    labels = entry.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    host = _json_field(entry, _JSON_HOSTS) or _first(labels, _LABEL_HOSTS)
    program = _json_field(entry, _JSON_PROGRAMS) or _first(labels, _LABEL_PROGRAMS)
    return Row(
        str(time) if isinstance(time, (str, int, float)) and not isinstance(time, bool) else None,
        host if isinstance(host, str) else None,
        program if isinstance(program, str) else None,
        message,
    )


def _json_field(entry: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value: Any = entry.get(name)
        if value is None and "." in name:
            value = entry
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, (dict, list)):
            return value
    return None


def parse_time(text: str, default_tz: tzinfo) -> float | None:
    """Unix seconds of the time shapes these exports print; None when it is not one of them."""
    text = text.strip().strip('"')
    match = _ISO_TIME.match(text)
    if match is not None:
        zone = match.group(8)
        return _unix(
            [int(match.group(i)) for i in range(1, 7)], match.group(7), default_tz if zone is None else zone
        )
    match = _KIBANA_TIME.match(text)
    if match is not None:
        month = _MONTHS.get(match.group(1).lower())
        if month is None:
            return None
        fields = [int(match.group(3)), month, int(match.group(2))] + [int(match.group(i)) for i in (4, 5, 6)]
        return _unix(fields, match.group(7), default_tz)
    match = _US_TIME.match(text)
    if match is not None:
        year = int(match.group(3))
        hour = int(match.group(4))
        if match.group(8) is not None:
            hour = hour % 12 + (12 if match.group(8) == "PM" else 0)
        fields = [year + 2000 if year < 100 else year, int(match.group(1)), int(match.group(2)), hour]
        return _unix(fields + [int(match.group(5)), int(match.group(6))], match.group(7), default_tz)
    if _EPOCH.match(text):
        value = float(text)
        while value > 1e11:  # milliseconds, microseconds or nanoseconds (Loki) since the epoch
            value /= 1000
        return value
    return None


def _unix(fields: list[int], fraction: str | None, zone: tzinfo | str) -> float | None:
    year, month, day, hour, minute, second = fields
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
    except ValueError:
        return None
    if isinstance(zone, str):
        if zone in ("Z", "UTC"):
            return moment.timestamp()
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        return moment.timestamp() - sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
    return moment.replace(tzinfo=zone).timestamp()


def log_order(records: list[KernelRecord]) -> tuple[list[list[KernelRecord]], bool]:
    """The rows of one export in log order, one list per host; and whether the file was newest first.

    The direction is what most consecutive stamps say (wall time, or the kernel's stamp where rows
    have no wall time). Rows that share a wall time (exports keep milliseconds, a report takes a
    few) are put in the kernel's order by its own stamp, whatever order the store kept them in.
    Hosts are assembled apart: an export interleaves their lines.
    """

    def stamp(record: KernelRecord) -> float | None:
        return record.wall_time if record.wall_time is not None else record.kernel_time

    ups = downs = 0
    previous: float | None = None
    for record in records:
        current = stamp(record)
        if current is None:
            continue
        if previous is not None:
            if current > previous:
                ups += 1
            elif current < previous:
                downs += 1
        previous = current
    newest_first = downs > ups
    ordered = records[::-1] if newest_first else list(records)
    by_host: dict[str | None, list[KernelRecord]] = {}
    for record in ordered:
        by_host.setdefault(record.host, []).append(record)
    return [_kernel_order_within_ties(rows) for rows in by_host.values()], newest_first


def _kernel_order_within_ties(rows: list[KernelRecord]) -> list[KernelRecord]:
    out: list[KernelRecord] = []
    start = 0
    while start < len(rows):
        end = start + 1
        wall = rows[start].wall_time
        while end < len(rows) and wall is not None and rows[end].wall_time == wall:
            end += 1
        run = rows[start:end]
        if len(run) > 1 and all(row.kernel_time is not None for row in run):
            run.sort(key=lambda row: row.kernel_time or 0.0)
        out.extend(run)
        start = end
    return out
