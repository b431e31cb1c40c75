"""The timeline in a terminal: a summary header, then one aligned line per incident.

Colour only on a TTY (and never with NO_COLOR). The flexible column (namespace/pod/container)
shrinks first and is cut with an ellipsis, memory sizes go below 100 columns, and flags that do
not fit move to a line of their own, so an 80-column terminal shows every fact without wrapping.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from streamer.timeline.model import Group, Incident, Summary, format_time

LIMIT_LABELS = {
    "container_limit": "container",
    "pod_limit": "pod",
    "node_allocatable": "allocatable",
    "node": "node",
    "cgroup_limit": "cgroup",
    "unknown": "unknown",
    "kubernetes_only": "k8s-only",
    "evicted": "evicted",
}
LIMIT_COLOURS = {
    "container_limit": "33",  # yellow
    "pod_limit": "35",  # magenta
    "node_allocatable": "31",
    "node": "1;31",  # bold red: the whole node ran out
    "cgroup_limit": "36",
    "kubernetes_only": "34",
    "evicted": "34",
}
WIDE = 100
ANSI_FREE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Style:
    colour: bool
    width: int

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, scale in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if value >= scale:
            amount = value / scale
            return f"{amount:.1f}{unit}" if amount < 100 else f"{amount:.0f}{unit}"
    return f"{value}B"


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _clock(seconds: float | None, with_date: bool) -> str:
    if seconds is None:
        return "(no time)"
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S.%f")[: 14 if with_date else 12]


def _listing(counter: Counter[str], limit: int = 6) -> str:
    items = counter.most_common()
    shown = " · ".join(f"{key} {count}" for key, count in items[:limit])
    return shown + (f" · … {len(items) - limit} more" if len(items) > limit else "") or "-"


def render_summary(summary: Summary, style: Style, source: str) -> list[str]:
    first = format_time(summary.first_kill) if summary.first_kill is not None else "-"
    last = format_time(summary.last_kill) if summary.last_kill is not None else "-"
    lines = [
        style.paint("OOM timeline", "1") + f"  {summary.kills} kill(s) in {summary.incidents} incident(s)"
    ]
    if summary.first_kill is not None:
        lines.append(f"  first kill {first[:23]}Z, last {last[:23]}Z")
    notes = []
    if summary.not_seen_by_kubernetes:
        notes.append(style.paint(f"{summary.not_seen_by_kubernetes} not seen by Kubernetes", "1;31"))
    if summary.repeated_workloads:
        notes.append(style.paint(f"{summary.repeated_workloads} workload(s) killed repeatedly", "1;33"))
    if summary.kubernetes_only:
        notes.append(f"{summary.kubernetes_only} with Kubernetes signals only")
    plain_notes = len("; ".join(ANSI_FREE.sub("", n) for n in notes)) + 2
    if notes and plain_notes <= style.width:
        lines.append("  " + "; ".join(notes))
    else:
        lines.extend("  " + note for note in notes)
    for label, counter in (
        ("namespaces", summary.by_namespace),
        ("workloads", summary.by_workload),
        ("limits", summary.by_limit),
        ("nodes", summary.by_node),
    ):
        if counter:
            lines.append(_cut(f"  {label:<11}{_listing(counter)}", style.width))
    lines.append(_cut(f"  source     {source}", style.width))
    return lines


def _flags(incident: Incident) -> list[tuple[str, str]]:
    flags: list[tuple[str, str]] = []
    if incident.visible_in_kubernetes is False:
        flags.append(("NOT SEEN BY K8S", "1;31"))
    if incident.workload_kill_number > 1:
        flags.append((f"repeat {incident.workload_kill_number}/{incident.workload_kills}", "33"))
    if len(incident.kills) > 1:
        flags.append((f"group kill x{len(incident.kills)}", "35"))
    kill = incident.kill
    if kill is not None and kill.data.get("partial"):
        flags.append(("partial report", "2"))
    return flags


def _where(incident: Incident) -> str:
    if incident.namespace or incident.pod:
        return "/".join(p or "-" for p in (incident.namespace, incident.pod, incident.container))
    kill = incident.kill
    if kill is not None:
        cgroup = kill.data.get("cgroup") or {}
        if isinstance(cgroup, dict):
            return str(cgroup.get("oom_memcg") or cgroup.get("task_memcg") or "-")
    return "-"


def render_incident(
    incident: Incident, style: Style, *, with_date: bool, node_width: int, where_wanted: int = 1000
) -> list[str]:
    wide = style.width >= WIDE
    clock = _clock(incident.time, with_date)
    node = _cut(incident.node or "-", node_width).ljust(node_width)
    victim = _cut(incident.victim or "-", 16 if wide else 13).ljust(16 if wide else 13)
    limit_key = incident.limit_fired or "unknown"
    limit = LIMIT_LABELS.get(limit_key, limit_key)[:11].ljust(11)
    fraction = incident.rss_fraction
    rss = f"{fraction * 100:5.1f}%" if fraction is not None else "    - "
    if wide:
        rss += f" {_size(incident.rss_bytes):>6}/{_size(incident.limit_bytes):<6}"
    fixed = len(clock) + len(node) + len(victim) + len(limit) + len(rss) + 5
    where_width = max(12, min(where_wanted, style.width - fixed))
    where = _cut(_where(incident), where_width).ljust(where_width)
    line = " ".join(
        [
            style.paint(clock, "1"),
            node,
            where,
            victim,
            style.paint(limit, LIMIT_COLOURS.get(limit_key, "")),
            rss,
        ]
    ).rstrip()
    lines = [line]
    flags = _flags(incident)
    if flags:
        plain_width = fixed + where_width + 2 + sum(len(text) + 2 for text, _ in flags)
        painted = "  ".join(style.paint(text, code) for text, code in flags)
        if plain_width <= style.width:
            lines[0] = f"{line}  {painted}"
        else:
            lines.append(" " * 4 + painted)
    if len(incident.events) > 1 or (incident.events and not incident.events[0].is_kill):
        anchor = incident.time
        for entry in incident.events:
            offset = f"{entry.time - anchor:+.3f}s" if entry.time is not None and anchor is not None else "?"
            detail = entry.data.get("reason") or ""
            if entry.is_kill:
                victim_data = entry.data.get("victim") or {}
                if isinstance(victim_data, dict):
                    detail = f"{victim_data.get('comm') or '?'}({victim_data.get('pid')})"
            message = entry.data.get("message") or ""
            text = f"    {offset:>10} {entry.type:<19} {detail} {message}".rstrip()
            lines.append(style.paint(_cut(text, style.width), "2"))
    return lines


def render(
    groups: list[Group], summary: Summary, style: Style, *, source: str, group_by: str
) -> Iterable[str]:
    yield from render_summary(summary, style, source)
    incidents = [i for g in groups for i in g.incidents]
    times = [i.time for i in incidents if i.time is not None]
    days = {datetime.fromtimestamp(t, tz=UTC).date() for t in times}
    with_date = len(days) > 1
    node_width = min(
        14 if style.width >= WIDE else 10, max((len(i.node or "-") for i in incidents), default=4)
    )
    node_width = max(node_width, 4)
    where_wanted = max((len(_where(i)) for i in incidents), default=12)
    if not incidents:
        yield ""
        yield "(no incidents in the range and filters)"
        return
    if not with_date and days:
        yield ""
        yield style.paint(f"── {min(days).isoformat()} (UTC) ──", "2")
    for group in groups:
        if group_by != "incident":
            kills = sum(len(i.kills) for i in group.incidents)
            yield ""
            yield style.paint(
                _cut(f"── {group.key}: {kills} kill(s), {len(group.incidents)} incident(s) ──", style.width),
                "1",
            )
        for incident in group.incidents:
            yield from render_incident(
                incident, style, with_date=with_date, node_width=node_width, where_wanted=where_wanted
            )
