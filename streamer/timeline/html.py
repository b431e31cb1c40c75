"""The timeline page: one self-contained HTML file (report) or the live page's shell.

Everything is inlined: the page's script and style and the charting library, uPlot (MIT,
vendored in assets/, ~50 KB minified; see README for why). A Content-Security-Policy forbids
every network request (``connect-src 'none'``) in the report and allows only the page's own
origin on the live page, so the file cannot reach a CDN even by mistake.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from streamer.timeline.model import Filters, Incident, Summary

ASSETS = "assets"


@cache
def _asset(name: str) -> str:
    return resources.files("streamer.timeline").joinpath(ASSETS, name).read_text(encoding="utf-8")


def _script_safe(data: bytes) -> str:
    # JSON inside <script>: "</" would end the element early; "<!--" would start a comment state.
    return data.decode().replace("</", "<\\/").replace("<!--", "<\\!--")


def render_page(data: dict[str, Any], *, title: str, live: bool) -> str:
    page = _asset("page.html")
    parts = {
        "{{CONNECT}}": "'self'" if live else "'none'",
        "{{TITLE}}": html.escape(title),
        "{{UPLOT_CSS}}": _asset("uPlot.min.css"),
        "{{PAGE_CSS}}": _asset("page.css"),
        "{{DATA}}": _script_safe(orjson.dumps(data)),
        "{{UPLOT_JS}}": _asset("uPlot.iife.min.js"),
        "{{PAGE_JS}}": _asset("page.js"),
    }
    for marker, value in parts.items():
        page = page.replace(marker, value)
    return page


def report_data(incidents: list[Incident], summary: Summary, *, source: str, mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "source": source,
        "summary": summary.to_dict(),
        "incidents": [incident.to_dict() for incident in incidents],
    }


def write_report(
    path: Path, incidents: list[Incident], summary: Summary, *, source: str, filters: Filters
) -> int:
    """Write the report atomically; returns its size in bytes."""
    del filters  # already applied; the page's own filters start empty
    page = render_page(
        report_data(incidents, summary, source=source, mode="report"),
        title="oomstream OOM timeline",
        live=False,
    )
    data = page.encode("utf-8")
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        from streamer.errors import CliError

        raise CliError(f"{path}: cannot write the report ({error.strerror or error})") from None
    return len(data)
