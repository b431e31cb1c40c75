"""The timeline page: one self-contained HTML file (report) or the live page's shell.

Everything is inlined: the page's script and style and the charting library, uPlot (MIT,
vendored in assets/, ~50 KB minified; see README for why). A Content-Security-Policy forbids
every network request (``connect-src 'none'``) in the report and allows only the page's own
origin on the live page, so the file cannot reach a CDN even by mistake.
"""

from __future__ import annotations

import base64
import html
import zlib
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


def _encode_data(data: dict[str, Any], live: bool) -> str:
    """The live page's shell: plain JSON (it carries no incidents; they come over the stream)."""
    del live
    return _script_safe(orjson.dumps(data))


def compressed_report_data(incidents: list[Incident], summary: Summary, *, source: str) -> str:
    """The report's data gzip-compressed and base64-encoded (the page inflates it with the
    browser's DecompressionStream): incident JSON compresses about tenfold, so a 10,000-event
    report is a file one can attach to a ticket. Encoded one incident at a time, so memory stays
    that of the timeline, not of a second copy of it as Python objects."""
    gzip_stream = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    head = {"mode": "report", "source": source, "summary": summary.to_dict()}
    chunks = [gzip_stream.compress(orjson.dumps(head)[:-1] + b',"incidents":[')]
    for number, incident in enumerate(incidents):
        piece = orjson.dumps(page_incident(incident))
        chunks.append(gzip_stream.compress(b"," + piece if number else piece))
    chunks.append(gzip_stream.compress(b"]}"))
    chunks.append(gzip_stream.flush())
    return "gzip+base64:" + base64.b64encode(b"".join(chunks)).decode("ascii")


def render_page(data: dict[str, Any] | str, *, title: str, live: bool) -> str:
    """The page with ``data`` inlined: a dict as JSON, or text already encoded for the page."""
    page = _asset("page.html")
    parts = {
        "{{CONNECT}}": "'self'" if live else "'none'",
        "{{TITLE}}": html.escape(title),
        "{{UPLOT_CSS}}": _asset("uPlot.min.css"),
        "{{PAGE_CSS}}": _asset("page.css"),
        "{{DATA}}": data if isinstance(data, str) else _encode_data(data, live),
        "{{UPLOT_JS}}": _asset("uPlot.iife.min.js"),
        "{{PAGE_JS}}": _asset("page.js"),
    }
    for marker, value in parts.items():
        page = page.replace(marker, value)
    return page


# What the page does not read (it formats times from "t" and numbers repeated kills itself); nulls
# are left out too.
_PAGE_DROPS = frozenset({"time", "event_id", "host", "workload_kill_number", "workload_kills"})


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None and k not in _PAGE_DROPS}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def page_incident(incident: Incident) -> dict[str, Any]:
    """The incident as the page reads it (the report's data and the live page's updates)."""
    compact: dict[str, Any] = _compact(incident.to_dict())
    return compact


def write_report(
    path: Path, incidents: list[Incident], summary: Summary, *, source: str, filters: Filters
) -> int:
    """Write the report atomically; returns its size in bytes."""
    del filters  # already applied; the page's own filters start empty
    page = render_page(
        compressed_report_data(incidents, summary, source=source),
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
