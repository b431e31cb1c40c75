"""Detect and strip the transport wrapper of one kernel log line.

Every input format (raw /dev/kmsg records, dmesg, dmesg -T, syslog RFC 3164/5424, journalctl
text, journald JSON export, bare messages) is reduced to a :class:`KernelRecord`. Detection is
per line, so a file that mixes formats (a concatenation of logs) still frames correctly.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, tzinfo
from types import ModuleType
from typing import Any

import orjson

from parsers import table
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry

FORMATS = (
    "auto",
    "kmsg",
    "dmesg",
    "dmesg-T",
    "syslog",
    "journal-json",
    "journalctl",
    "plain",
)

# Framer.records_by_format: records framed, by the format each was read as.
RECORD_FORMATS = Telemetry(
    "framer.records_by_format",
    (
        Count("kmsg", "/dev/kmsg records"),
        Count("dmesg", "dmesg lines ([seconds] stamps)"),
        Count("dmesg-{}", "dmesg variants (-T: wall-clock dates)"),
        Count("syslog-{}", "syslog lines (RFC 3164, RFC 5424)"),
        Count("journalctl-{}", "journalctl -o short* lines"),
        Count("journal-json", "journalctl -o json entries"),
        Count("table", "rows of a task table printed as a table"),
        Count("plain", "bare kernel messages (no known prefix)"),
        Count("fluentbit-kmsg", "Fluent Bit kmsg input records (parsers/shipper.py)"),
    ),
)
# Framer.skipped: lines not framed into a record, by reason (oomstream_parse_errors{reason}).
FRAMER_SKIPS = Telemetry(
    "framer.skipped",
    (
        Count("empty", "empty lines"),
        Count("format_mismatch", "lines not in the forced format, kept as plain messages"),
        Count("table_header", "header rows of a task table"),
        Count("not_kernel", "lines from something other than the kernel"),
        Count("untrusted", "journal entries claiming to be kernel messages that user space wrote"),
        Count("untrusted_oom_line", "of those, lines that look like an OOM report"),
        Count("journal_blob", "journal records printed as [N blob data] (unreadable)"),
        Count("kmsg_dictionary", "kmsg dictionary continuation lines (KEY=value)"),
        Count("kmsg_malformed", "kmsg records without a valid prefix"),
        Count("journalctl_marker", "journalctl's '-- ... --' marker lines"),
        Count("bad_json", "journal-json lines that are not a JSON object"),
        Count("journal_no_message", "journal entries without a MESSAGE"),
        Count("bad_envelope", "shipper records whose envelope has no usable message (parsers/shipper.py)"),
    ),
)

_MONTHS = {
    name: index + 1
    for index, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}

_KMSG = re.compile(r"(\d+),(\d+),(\d+),[^;]*;")
_KMSG_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_RAW_PRIO = re.compile(r"<(\d{1,3})>")
_DMESG = re.compile(r"\[\s*(\d+\.\d+)\] ?")
# dmesg -T: strftime("%a %b %e %H:%M:%S %Y") in the reader's locale, so "[<weekday> <month> <day>
# HH:MM:SS YYYY]" with names in any language ("[ven. déc.  4 05:05:56 2026]", "[月  1月 26 ...]",
# "[dc. de des.  4 ...]"); other tools put the day first. The shape is matched here, the names
# are read by _dmesg_t_date.
_DMESG_T = re.compile(r"\[(\S+) +([^\]]*?) *(\d{1,2}):(\d{2}):(\d{2}) +(\d{4})\] ?")
_DMESG_T_ALT = re.compile(r"\[(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?\] ?")
_SYSLOG_TAG = re.compile(r"(\S+) ([^\s:\[]+)(?:\[(\d+)\])?: ?")
_BSD_TIME = re.compile(r"([A-Za-z]{3}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))? ")
_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})? "
)
_RFC5424 = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SD_ELEMENT = re.compile(r"(?:\[(?:[^\]\\]|\\.)*\])+ ?|- ?")
_MONOTONIC_PREFIX = re.compile(r"\[\s*(\d+\.\d+)\] (\S+) kernel: ?")
_RSYSLOG_ESCAPE = re.compile(r"#([0-3][0-7]{2})")
# journalctl without --all: "[88B blob data]", "[1.2K blob data]" (systemd's format_bytes()).
_BLOB = re.compile(r"\[[0-9.]+[BKMGTPE]i?B? blob data\]$")
_BOOT_MARKER = re.compile(r"-- Boot ([0-9a-f]{32}) --")


# Records are built for every framed line; tuple.__new__ skips the NamedTuple's generated
# Python-level __new__ (half the cost). Arguments must be complete and in field order.
_new = tuple.__new__


class _Skip:
    """A line that matched a format but carries no kernel record (counted where it is made)."""


SKIP = _Skip()
Framed = KernelRecord | _Skip | None


def _unescape_kmsg(text: str) -> str:
    if "\\x" not in text:
        return text
    raw = _KMSG_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    # chr() gave latin-1 code points for each escaped byte; reassemble UTF-8 where it is valid.
    try:
        return raw.encode("latin-1").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return raw


def _unescape_rsyslog(text: str) -> str:
    if "#" not in text:
        return text
    return _RSYSLOG_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def decode_line(line: bytes) -> str:
    """Bytes to text without losing anything: invalid UTF-8 becomes ``\\xNN`` like kmsg prints it."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("utf-8", "backslashreplace")


class Framer:
    """Frames lines of one input stream. Keeps only the context that continuation lines need."""

    def __init__(
        self,
        fmt: str = "auto",
        *,
        source_kind: str = "file",
        path: str | None = None,
        host: str | None = None,
        boot_id: str | None = None,
        year: int | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
        self.fmt = fmt
        self.source_kind = source_kind
        self.path = path
        self.host = host
        self.boot_id = boot_id
        self.year = year if year is not None else datetime.now(UTC).year
        self.tz: tzinfo = tz if tz is not None else UTC
        self.records_by_format: Tally = RECORD_FORMATS.tally()
        self.skipped: Tally = FRAMER_SKIPS.tally()
        # Records kept without a time because their date could not be read, by reason.
        self.unread_times: Counter[str] = Counter()
        self._last: KernelRecord | None = None
        self._indent = 0
        self._layout: table.Layout | None = None  # a table export's columns, from its header
        self._dates: dict[tuple[str, str, int], tuple[int, int] | str] = {}  # dmesg -T names read

    # -- public -------------------------------------------------------------------------
    def frame(self, line: bytes | str, offset: int | None = None) -> KernelRecord | None:
        """Frame one line (without its newline). Returns None for lines that carry no record."""
        text = decode_line(line) if isinstance(line, bytes) else line
        if text.endswith("\r"):
            text = text[:-1]
        position = _new(SourcePosition, (self.source_kind, offset, None, None, self.path, None, None))
        record = self._frame_text(text, position)
        if isinstance(record, KernelRecord):
            self.records_by_format[record.format] += 1
            if not record.continuation:
                self._last = record
                # The prefix's width: continuation lines are indented by as much.
                self._indent = len(text) - len(record.message)
            return record
        return None

    def frame_kmsg_record(self, data: bytes, *, boot_id: str | None = None) -> KernelRecord | None:
        """Frame one record as read() from /dev/kmsg: header line plus ' KEY=value' lines."""
        text = decode_line(data).rstrip("\n")
        head, _, _dictionary = text.partition("\n")
        record = self._kmsg(head, SourcePosition(kind="kmsg"), boot_id=boot_id or self.boot_id)
        if record is None:
            self.skipped["kmsg_malformed"] += 1
            return None
        self.records_by_format[record.format] += 1
        return record

    # -- detection -----------------------------------------------------------------------
    def _frame_text(self, text: str, position: SourcePosition) -> Framed:
        fmt = self.fmt
        if not text:
            self.skipped["empty"] += 1
            return None
        if fmt == "auto":
            return self._auto(text, position)
        framed = self._forced(fmt, text, position)
        if framed is None:
            # Never drop a line because the forced format did not fit: keep it as a bare message.
            self.skipped["format_mismatch"] += 1
            return self._plain(text, position)
        return framed

    def _forced(self, fmt: str, text: str, position: SourcePosition) -> Framed:
        """The forced format's framing; None when the line does not have that shape."""
        first = text[0]
        if first in " \t" and fmt != "plain":
            return self._continuation(text, position)
        if fmt == "kmsg":
            return self._kmsg(text, position)
        if fmt == "dmesg":
            return self._dmesg(text, position)
        if fmt == "dmesg-T":
            return self._dmesg_t(text, position)
        if fmt == "syslog":
            return self._syslog(text, position)
        if fmt == "journalctl":
            if text.startswith("-- "):
                return self._journal_marker(text)
            if first == "[":
                return self._short_monotonic(text, position, strict=False)
            return self._syslog(text, position, journalctl=True)
        if fmt == "journal-json":
            return self._journal_json(text, position) or SKIP
        return self._plain(text, position)

    def _auto(self, text: str, position: SourcePosition) -> Framed:
        first = text[0]
        record: Framed = None
        if first == "{":
            return self._journal_json(text, position)
        if first == "[":
            # journalctl -o short-monotonic names the host and the "kernel:" tag after the stamp.
            if text.find(" kernel:", 0, 100) >= 0:
                record = self._short_monotonic(text, position, strict=True)
            record = record or self._dmesg(text, position) or self._dmesg_t(text, position)
        elif first == "<":
            record = self._dmesg(text, position) or self._syslog(text, position)
        elif first.isdigit():
            record = self._kmsg(text, position) or self._syslog(text, position, journalctl=None)
        elif first in " \t":
            record = self._continuation(text, position)
        elif first == "-" and text.startswith("-- "):
            return self._journal_marker(text)
        elif first.isalpha():
            record = self._syslog(text, position, journalctl=None)
        if record is None:
            record = self._table(text, position)
        return record if record is not None else self._plain(text, position)

    # -- formats -------------------------------------------------------------------------
    def _table(self, text: str, position: SourcePosition) -> Framed:
        """A row of a log-search export (Kibana, Loki, Splunk; see parsers/table.py), or its header."""
        layout = self._layout
        row = table.split_with_layout(text, layout) if layout is not None else None
        if row is None:
            if layout is None or text[0] in '"@_' or text[0].isalpha():
                header = table.header_layout(text)
                if header is not None:
                    self._layout = header
                    self.skipped["table_header"] += 1
                    return SKIP
            row = table.split_row(text)
            if row is None:
                return None
        return self._table_row(row, position)

    def _table_row(self, row: table.Row, position: SourcePosition) -> Framed:
        message = row.message
        if not message:
            self.skipped["empty"] += 1
            return SKIP
        # The message column holds a kernel line of its own: a "[seconds]" stamp (the kernel's
        # time), a syslog line (Splunk's _raw), or the bare message.
        first = message[0]
        inner: Framed = None
        if first == "[":
            inner = self._dmesg(message, position)
        elif first == "<" or first.isalnum():
            inner = self._syslog(message, position, journalctl=None)
        if isinstance(inner, _Skip):
            return inner  # a syslog line of another program (counted there)
        program = row.program
        if inner is None and program is not None and program.partition("[")[0] != "kernel":
            self.skipped["not_kernel"] += 1
            if _looks_like_oom(message):
                self.skipped["untrusted_oom_line"] += 1
            return SKIP
        wall = table.parse_time(row.time_text, self.tz) if row.time_text is not None else None
        if inner is None:
            return KernelRecord(
                message=message, format="table", wall_time=wall,
                time_source="export" if wall is not None else None, host=row.host or self.host,
                boot_id=self.boot_id, position=position,
            )  # fmt: skip
        if wall is None:
            wall = inner.wall_time
        return KernelRecord(
            message=inner.message, format="table", kernel_time=inner.kernel_time, wall_time=wall,
            time_source="export" if wall is not None else None, host=row.host or inner.host,
            boot_id=self.boot_id, facility=inner.facility, level=inner.level, trusted=inner.trusted,
            position=position,
        )  # fmt: skip

    def _plain(self, text: str, position: SourcePosition) -> Framed:
        if text.endswith(" blob data]") and _BLOB.match(text):
            # journalctl -o cat prints the placeholder alone.
            self.skipped["journal_blob"] += 1
            return SKIP
        return KernelRecord(
            message=text, format="plain", host=self.host, boot_id=self.boot_id, position=position
        )

    def _continuation(self, text: str, position: SourcePosition) -> Framed:
        last = self._last
        if last is None or last.format in ("plain", "journal-json"):
            return None
        stripped = text.strip()
        if last.format == "kmsg" and "=" in stripped and " " not in stripped:
            # ' SUBSYSTEM=pci' dictionary lines of a /dev/kmsg dump: metadata, not message text.
            self.skipped["kmsg_dictionary"] += 1
            return SKIP
        indent = self._indent
        if 0 < indent < len(text) and text[:indent].isspace():
            # Exactly the prefix's width: spaces after a newline in a comm are the comm's.
            stripped = text[indent:].rstrip()
        return last._replace(message=stripped, continuation=True, position=position)

    def _kmsg(
        self, text: str, position: SourcePosition, *, boot_id: str | None = None
    ) -> KernelRecord | None:
        match = _KMSG.match(text)
        if match is None:
            return None
        prio = int(match.group(1))
        seq = int(match.group(2))
        usec = int(match.group(3))
        facility = prio >> 3
        position = SourcePosition(
            kind=position.kind,
            offset=position.offset,
            seq=seq,
            path=position.path,
        )
        return KernelRecord(
            message=_unescape_kmsg(text[match.end() :]),
            format="kmsg",
            kernel_time=usec / 1_000_000,
            host=self.host,
            boot_id=boot_id or self.boot_id,
            facility=facility,
            level=prio & 7,
            # The kernel forces facility LOG_USER (1) on anything user space writes to /dev/kmsg.
            trusted=facility == 0,
            position=position,
        )

    def _dmesg(self, text: str, position: SourcePosition) -> KernelRecord | None:
        level: int | None = None
        facility: int | None = None
        start = 0
        if text[0] == "<":
            prio = _RAW_PRIO.match(text)
            if prio is None:
                return None
            value = int(prio.group(1))
            level, facility = value & 7, value >> 3
            start = prio.end()
        # "[%5lu.%06lu] ": parsed by hand, this runs for every line of every report.
        close = text.find("] ", start, start + 24)
        if close < 0 or text[start] != "[":
            match = _DMESG.match(text, start)  # "]" at the end of the line, or odd spacing
            if match is None:
                return None
            stamp, end = match.group(1), match.end()
        else:
            stamp, end = text[start + 1 : close].lstrip(), close + 2
            dot = stamp.find(".")
            if dot <= 0 or not stamp[:dot].isdigit() or not stamp[dot + 1 :].isdigit():
                return None
        # Positional: the field order of KernelRecord (message, format, kernel_time, wall_time,
        # time_source, host, boot_id, facility, level, trusted, continuation, position).
        return _new(KernelRecord, (
            text[end:], "dmesg", float(stamp), None, None, self.host, self.boot_id,
            facility, level, facility is None or facility == 0, False, position,
        ))  # fmt: skip

    def _dmesg_t(self, text: str, position: SourcePosition) -> KernelRecord | None:
        wall: float | None
        match = _DMESG_T.match(text)
        if match is not None:
            year = int(match.group(6))
            key = (match.group(1), match.group(2), year)
            date = self._dates.get(key)
            if date is None:
                # Thousands of lines share a date: read its names once.
                if len(self._dates) > 4096:
                    self._dates.clear()
                date = self._dates[key] = _dmesg_t_date(*key)
            if isinstance(date, str):
                # The frame is sure (the shape matched); only the names are unknown: keep the
                # record, without a time, and say why.
                self.unread_times[date] += 1
                wall = None
            else:
                wall = self._to_unix(
                    year, date[0], date[1],
                    int(match.group(3)), int(match.group(4)), int(match.group(5)), 0,
                )  # fmt: skip
        else:
            match = _DMESG_T_ALT.match(text)
            if match is None:
                return None
            micros = int((match.group(7) or "0").ljust(6, "0"))
            year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
            wall = self._to_unix(year, month, day, hour, minute, second, micros)
        return KernelRecord(
            message=text[match.end() :],
            format="dmesg-T",
            wall_time=wall,
            time_source="dmesg_T" if wall is not None else None,
            host=self.host,
            boot_id=self.boot_id,
            position=position,
        )

    def _short_monotonic(self, text: str, position: SourcePosition, *, strict: bool) -> Framed:
        match = _MONOTONIC_PREFIX.match(text)
        if match is None:
            if strict:
                return None
            generic = _DMESG.match(text)
            if generic is None:
                return None
            tagged = _SYSLOG_TAG.match(text, generic.end())
            if tagged is None:
                return None
            return self._tagged(
                text, tagged, "journalctl-short-monotonic", float(generic.group(1)), None, None, position
            )
        if text.endswith(" blob data]") and _BLOB.match(text, match.end()):
            self.skipped["journal_blob"] += 1
            return SKIP
        return KernelRecord(
            message=text[match.end() :],
            format="journalctl-short-monotonic",
            kernel_time=float(match.group(1)),
            host=match.group(2),
            boot_id=self.boot_id,
            position=position,
        )

    def _tagged(
        self,
        text: str,
        tagged: re.Match[str],
        fmt: str,
        kernel_time: float | None,
        wall: float | None,
        time_source: str | None,
        position: SourcePosition,
        facility: int | None = None,
        level: int | None = None,
    ) -> Framed:
        tag = tagged.group(2)
        message = text[tagged.end() :]
        if tag != "kernel":
            self.skipped["not_kernel"] += 1
            if _looks_like_oom(message):
                self.skipped["untrusted_oom_line"] += 1
            return SKIP
        if message.endswith(" blob data]") and _BLOB.match(message):
            # journalctl text output (-o short looks like RFC 3164) replaces a message that is not
            # printable text with "[88B blob data]": the text is gone; count it (read --all or
            # -o json to keep such records).
            self.skipped["journal_blob"] += 1
            return SKIP
        if fmt.startswith("syslog"):
            message = _unescape_rsyslog(message)
        inner = _DMESG.match(message)
        if inner is not None:
            kernel_time = float(inner.group(1))
            message = message[inner.end() :]
        return KernelRecord(
            message=message,
            format=fmt,
            kernel_time=kernel_time,
            wall_time=wall,
            time_source=time_source,
            host=tagged.group(1),
            boot_id=self.boot_id,
            facility=facility,
            level=level,
            trusted=facility in (None, 0),
            position=position,
        )

    def _syslog(self, text: str, position: SourcePosition, *, journalctl: bool | None = False) -> Framed:
        """RFC 3164/5424 syslog lines, and journalctl short/short-iso/short-precise (same shapes)."""
        start = 0
        facility: int | None = None
        level: int | None = None
        if text[0] == "<":
            prio = _RAW_PRIO.match(text)
            if prio is None:
                return None
            value = int(prio.group(1))
            facility, level = value >> 3, value & 7
            start = prio.end()
            rfc5424 = _RFC5424.match(text, start)
            if rfc5424 is not None:
                return self._rfc5424(text, rfc5424, facility, level, position)
        wall: float | None
        precise = False
        match = _BSD_TIME.match(text, start)
        if match is not None:
            month = _MONTHS.get(match.group(1).lower())
            if month is None:
                return None
            fraction = match.group(6)
            precise = fraction is not None
            micros = int((fraction or "0")[:6].ljust(6, "0"))
            wall = self._to_unix(
                self.year, month, int(match.group(2)),
                int(match.group(3)), int(match.group(4)), int(match.group(5)), micros,
            )  # fmt: skip
            iso = False
        else:
            match = _ISO_TIME.match(text, start)
            if match is None:
                return None
            wall = _iso_to_unix(match, self.tz)
            iso = True
            precise = match.group(7) is not None
        tagged = _SYSLOG_TAG.match(text, match.end())
        if tagged is None:
            return None
        if journalctl is True:
            fmt = (
                "journalctl-short-iso"
                if iso
                else ("journalctl-short-precise" if precise else "journalctl-short")
            )
        elif journalctl is False or facility is not None:
            fmt = "syslog-3164"
        elif iso:
            # rsyslog's high-precision file format carries a fraction; short-iso does not.
            fmt = "syslog-3164" if precise else "journalctl-short-iso"
        else:
            # Plain RFC 3164 files and journalctl -o short are the same shape.
            fmt = "journalctl-short-precise" if precise else "syslog-3164"
        return self._tagged(
            text, tagged, fmt, None, wall, "syslog" if fmt.startswith("syslog") else "journal",
            position, facility, level,
        )  # fmt: skip

    def _rfc5424(
        self, text: str, match: re.Match[str], facility: int, level: int, position: SourcePosition
    ) -> Framed:
        timestamp, host, app = match.group(1), match.group(2), match.group(3)
        iso = _ISO_TIME.match(timestamp + " ")
        wall = _iso_to_unix(iso, self.tz) if iso is not None else None
        rest = match.end()
        sd = _SD_ELEMENT.match(text, rest)
        if sd is not None:
            rest = sd.end()
        message = text[rest:]
        if message.startswith("\ufeff"):
            message = message[1:]
        if app != "kernel":
            self.skipped["not_kernel"] += 1
            if _looks_like_oom(message):
                self.skipped["untrusted_oom_line"] += 1
            return SKIP
        message = _unescape_rsyslog(message)
        kernel_time: float | None = None
        inner = _DMESG.match(message)
        if inner is not None:
            kernel_time = float(inner.group(1))
            message = message[inner.end() :]
        return KernelRecord(
            message=message,
            format="syslog-5424",
            kernel_time=kernel_time,
            wall_time=wall,
            time_source="syslog" if wall is not None else None,
            host=None if host == "-" else host,
            boot_id=self.boot_id,
            facility=facility,
            level=level,
            trusted=facility == 0,
            position=position,
        )

    def _journal_marker(self, text: str) -> _Skip:
        boot = _BOOT_MARKER.match(text)
        if boot is not None:
            self.boot_id = boot.group(1)
        self.skipped["journalctl_marker"] += 1
        return SKIP

    def _journal_json(self, text: str, position: SourcePosition) -> KernelRecord | None:
        try:
            entry = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.skipped["bad_json"] += 1
            return None
        if not isinstance(entry, dict):
            self.skipped["bad_json"] += 1
            return None
        return self.frame_journal_entry(entry, position)

    def frame_journal_entry(self, entry: dict[str, Any], position: SourcePosition) -> KernelRecord | None:
        """Frame one journald entry (a decoded ``journalctl -o json`` object)."""
        message = _journal_message(entry.get("MESSAGE"))
        if message is None:
            row = table.row_from_json(entry) if "MESSAGE" not in entry else None
            if row is not None:
                # Not journald: a document of a log-search JSON export (Elasticsearch, logcli).
                framed = self._table_row(row, position)
                return framed if isinstance(framed, KernelRecord) else None
            self.skipped["journal_no_message"] += 1
            return None
        cursor = entry.get("__CURSOR")
        position = SourcePosition(
            kind=position.kind,
            offset=position.offset,
            cursor=cursor if isinstance(cursor, str) else None,
            path=position.path,
        )
        transport = entry.get("_TRANSPORT")
        if transport != "kernel":
            identifier = entry.get("SYSLOG_IDENTIFIER")
            if identifier == "kernel" or entry.get("SYSLOG_FACILITY") == "0":
                # Claims to be the kernel but came through another transport: never trusted.
                self.skipped["untrusted"] += 1
                if _looks_like_oom(message):
                    self.skipped["untrusted_oom_line"] += 1
            else:
                self.skipped["not_kernel"] += 1
            return None
        # journald files what user space writes to /dev/kmsg under _TRANSPORT=kernel too; only the
        # facility (forced to LOG_USER by the kernel) tells those apart.
        facility = _int_field(entry.get("SYSLOG_FACILITY"))
        kernel_time = _int_field(entry.get("_SOURCE_MONOTONIC_TIMESTAMP"))
        realtime = _int_field(entry.get("__REALTIME_TIMESTAMP"))
        priority = _int_field(entry.get("PRIORITY"))
        host = entry.get("_HOSTNAME")
        boot_id = entry.get("_BOOT_ID")
        return KernelRecord(
            message=message,
            format="journal-json",
            kernel_time=kernel_time / 1_000_000 if kernel_time is not None else None,
            wall_time=realtime / 1_000_000 if realtime is not None else None,
            time_source="journal_receive" if realtime is not None else None,
            host=host if isinstance(host, str) else self.host,
            boot_id=boot_id if isinstance(boot_id, str) else self.boot_id,
            facility=facility if facility is not None else 0,
            level=priority,
            trusted=facility in (None, 0),
            position=position,
        )

    # -- time ------------------------------------------------------------------------------
    def _to_unix(
        self, year: int, month: int, day: int, hour: int, minute: int, second: int, micros: int
    ) -> float | None:
        try:
            moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=self.tz)
        except ValueError:
            return None
        return moment.timestamp()


def _locale_dates() -> ModuleType:
    # Imported on first use: 60 KB of names that only dmesg -T input needs (about 25 ms to load).
    from parsers import locale_dates

    return locale_dates


def _name_key(token: str) -> str:
    return token.casefold().strip().rstrip(".").strip()


def _months_named(name: str) -> tuple[int, ...]:
    key = _name_key(name)
    if not key:
        return ()
    months: tuple[int, ...] | None = _locale_dates().MONTHS.get(key)
    if months is not None:
        return months
    if key[:3] in _MONTHS and key.isascii() and key.isalpha():
        return (_MONTHS[key[:3]],)  # English names of any length ("Sept", "June")
    digits = "".join(ch for ch in key if ch.isdigit())
    if digits and 1 <= int(digits) <= 12:
        return (int(digits),)  # "1月", "12월", "1-р сар": numbered months of any script
    return ()


def _dmesg_t_date(weekday: str, middle: str, year: int) -> tuple[int, int] | str:
    """(month, day) of a dmesg -T stamp's names, or the reason they cannot be read.

    ``middle`` holds the month name and the day, in either order; month names may have spaces
    ("de des.") or digits ("12月"). A name shared by several languages' months is settled by the
    weekday, which must fall on the date.
    """
    tokens = middle.split()
    if len(tokens) == 1 and tokens[0].isdigit():
        tokens, weekday = [weekday, tokens[0]], ""  # no weekday: "[Dec  4 05:05:56 2026]"
    if len(tokens) < 2:
        return "dmesg_T_no_day"
    # (day, month name) readings: strftime's "%b %e" first, then day first. A month name may end
    # in a number ("Thg 1"), so both can fit; a name the table knows exactly wins.
    readings = [
        (int(day), " ".join(name))
        for day, name in ((tokens[-1], tokens[:-1]), (tokens[0], tokens[1:]))
        if day.isdigit()
    ]
    if not readings:
        return "dmesg_T_no_day"
    locale_dates = _locale_dates()
    exact = [reading for reading in readings if _name_key(reading[1]) in locale_dates.MONTHS]
    weekday_key = _name_key(weekday)
    dates: list[tuple[int, int]] = []
    for day, name in exact or readings:
        months = _months_named(name)
        if len(months) > 1:
            # Read as each language that has this month name: its weekday name must fall on the
            # date. Where several languages still fit, util-linux's languages and English win.
            fits = [
                (month, preferred)
                for month, names, preferred in locale_dates.SHARED_MONTHS.get(_name_key(name), ())
                if (index := _weekday(year, month, day)) is not None and names[index] == weekday_key
            ]
            months = tuple({month for month, _ in fits})
            if len(months) > 1:
                months = tuple({month for month, preferred in fits if preferred})
            if len(months) != 1:
                continue
        if months and (months[0], day) not in dates:
            dates.append((months[0], day))
    if len(dates) > 1:
        matching = [
            date for date in dates if _weekday(year, *date) in locale_dates.WEEKDAYS.get(weekday_key, ())
        ]
        dates = matching or dates[:1]  # neither settles it: strftime's order
    if not dates:
        if any(len(_months_named(name)) > 1 for _, name in exact or readings):
            return "dmesg_T_ambiguous_month"
        return "dmesg_T_unknown_month"
    return dates[0]


def _weekday(year: int, month: int, day: int) -> int | None:
    try:
        return datetime(year, month, day).weekday()
    except ValueError:
        return None


def _iso_to_unix(match: re.Match[str], default_tz: tzinfo) -> float | None:
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    zone = match.group(8)
    try:
        moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
    except ValueError:
        return None
    if zone is None:
        return moment.replace(tzinfo=default_tz).timestamp()
    if zone == "Z":
        return moment.timestamp()
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
    return moment.timestamp() - offset


def _int_field(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    return None


def _journal_message(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # journalctl -o json prints MESSAGE as a byte array when it is not valid UTF-8.
        try:
            raw = bytes(value)
        except (TypeError, ValueError):
            return None
        return decode_line(raw).rstrip("\n")
    return None


_OOM_HINT = re.compile(r"oom|OOM|[Kk]illed process|Kill process")


def _looks_like_oom(message: str) -> bool:
    return _OOM_HINT.search(message) is not None
