"""What log shippers send, reduced to kernel records: RFC 6587 frames and shipper envelopes.

Pure: bytes and decoded JSON objects in, ``KernelRecord``s out, no I/O and no clock. The syslog
message inside a frame (RFC 3164 or RFC 5424) is framed by ``parsers.framing.Framer``, so a line
relayed by a shipper and the same line read from a file give the same record.

Trust follows the local inputs: only a record whose envelope says it came from the kernel may
become an OOM event (syslog facility kern with the tag ``kernel``, journald ``_TRANSPORT=kernel``
with facility kern, Fluent Bit's ``kmsg`` input); everything else is counted in the framer's
``skipped`` counter (``untrusted``, ``untrusted_oom_line``, ``not_kernel``) and never assembled.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from parsers.framing import _DMESG, FRAMER_SKIPS, Framer, _looks_like_oom
from parsers.records import KernelRecord, SourcePosition
from parsers.telemetry import Count, Tally, Telemetry

# What one syslog connection's frames were (RFC 6587).
FRAME_TELEMETRY = Telemetry(
    "syslog.frames",
    (
        Count("frames_octet_counted", "syslog frames with RFC 6587 octet counting"),
        Count("frames_newline", "syslog frames ended by a newline"),
        Count("oversized_frames", "frames over max_frame_bytes, skipped"),
        Count("truncated_frames", "frames cut short (connection closed, bad length), skipped"),
    ),
)
# Envelope problems count into the framer's tally (its skipped lines, by reason).
ENVELOPE_SKIPS = FRAMER_SKIPS

DEFAULT_MAX_FRAME_BYTES = 64 << 10
# RFC 6587 3.4.1: MSG-LEN is a non-zero decimal; 9 digits is far beyond any sane frame.
_MAX_LENGTH_DIGITS = 9


class SyslogFrameSplitter:
    """Split one TCP syslog stream into messages, RFC 6587 octet counting or newline framing.

    The framing is decided per frame (a frame starting with a non-zero digit run and a space is
    octet counted; anything else ends at LF), as rsyslog and syslog-ng do, so a sender that mixes
    them still frames. Frames over ``max_frame_bytes`` are dropped whole and counted
    (``oversized_frames``); a bad length prefix is counted (``bad_frames``) and the stream
    resynchronises at the next newline. Good frames around a bad one are never lost.
    """

    __slots__ = ("_buffer", "_skip_bytes", "_skip_to_newline", "counts", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes <= 0:
            raise ValueError(f"max_frame_bytes must be > 0, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self.counts: Tally = FRAME_TELEMETRY.tally()
        self._buffer = bytearray()
        self._skip_bytes = 0  # the rest of an oversized octet-counted frame
        self._skip_to_newline = False  # the rest of an oversized or garbled newline frame

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        buffer = self._buffer
        buffer += data
        while buffer:
            if self._skip_bytes:
                dropped = min(self._skip_bytes, len(buffer))
                del buffer[:dropped]
                self._skip_bytes -= dropped
                continue
            if self._skip_to_newline:
                newline = buffer.find(b"\n")
                if newline < 0:
                    buffer.clear()
                    break
                del buffer[: newline + 1]
                self._skip_to_newline = False
                continue
            first = buffer[0]
            if first in b"\n\r\x00 ":
                # Blank lines and stray terminators between frames carry nothing.
                del buffer[:1]
                continue
            if 0x31 <= first <= 0x39:  # '1'..'9': maybe an octet count
                decided = self._octet_counted(buffer, frames)
                if decided is None:
                    break  # need more bytes to decide
                if decided:
                    continue
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > self.max_frame_bytes:
                    self.counts["oversized_frames"] += 1
                    buffer.clear()
                    self._skip_to_newline = True
                break
            if newline > self.max_frame_bytes:
                self.counts["oversized_frames"] += 1
            else:
                end = newline - 1 if newline and buffer[newline - 1] == 0x0D else newline
                frames.append(bytes(buffer[:end]))
                self.counts["frames_newline"] += 1
            del buffer[: newline + 1]
        return frames

    def _octet_counted(self, buffer: bytearray, frames: list[bytes]) -> bool | None:
        """True: consumed an octet-counted frame (or its oversized start); False: not one; None: wait."""
        limit = min(len(buffer), _MAX_LENGTH_DIGITS + 1)
        digits = 0
        while digits < limit and 0x30 <= buffer[digits] <= 0x39:
            digits += 1
        if digits == len(buffer):
            return None if digits <= _MAX_LENGTH_DIGITS else False
        if buffer[digits] != 0x20 or digits > _MAX_LENGTH_DIGITS:
            return False  # "2026-12-04T..." or the like: a newline-framed message
        length = int(buffer[:digits])
        start = digits + 1
        if length > self.max_frame_bytes:
            self.counts["oversized_frames"] += 1
            available = len(buffer) - start
            del buffer[: start + min(length, available)]
            self._skip_bytes = max(0, length - available)
            return True
        if len(buffer) - start < length:
            return None
        frame = bytes(buffer[start : start + length])
        del buffer[: start + length]
        if frame.endswith(b"\n"):
            frame = frame[:-1]  # some senders count the trailing LF
        frames.append(frame)
        self.counts["frames_octet_counted"] += 1
        return True

    def finish(self) -> bytes | None:
        """The unterminated last newline frame at end of stream (a sender that closed mid-line)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        if self._skip_bytes:
            self.counts["truncated_frames"] += 1
            self._skip_bytes = 0
            return None
        if not rest.strip() or self._skip_to_newline:
            self._skip_to_newline = False
            return None
        if 0x31 <= rest[0] <= 0x39 and re.match(rb"[1-9]\d{0,8} ", rest):
            self.counts["truncated_frames"] += 1  # an octet-counted frame cut short
            return None
        self.counts["frames_newline"] += 1
        return rest.rstrip(b"\r")


# -- envelopes ---------------------------------------------------------------------------------

_FACILITY_NAMES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
_LEVEL_NAMES = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4,
    "notice": 5, "info": 6, "debug": 7,
}  # fmt: skip
_ISO = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?$")
_JOURNAL_MARKS = ("_TRANSPORT", "__REALTIME_TIMESTAMP", "_BOOT_ID", "__CURSOR", "_SOURCE_MONOTONIC_TIMESTAMP")

# The envelope shapes recognised, for counters and tests.
SHAPES = (
    "journald",  # journal export JSON, Fluent Bit `systemd` input
    "vector-journald",  # Vector `journald` source: journald fields plus message/host/timestamp
    "filebeat-journald",  # Filebeat `journald` input: ECS names (systemd.transport, host.boot_id)
    "fluentbit-kmsg",  # Fluent Bit `kmsg` input: priority, sequence, sec, usec, msg
    "syslog-json",  # rsyslog / syslog-ng JSON templates: msg, facility, programname, hostname
    "line",  # a raw log line in `message`/`log` (Vector `file`, Filebeat `log`, Fluent Bit `tail`)
)


def envelope_shape(obj: dict[str, Any]) -> str | None:
    """The shipper envelope ``obj`` has, or None when it carries no message at all."""
    if isinstance(obj.get("MESSAGE"), str | list) and any(key in obj for key in _JOURNAL_MARKS):
        return "journald"
    if "msg" in obj and "sequence" in obj and ("sec" in obj or "usec" in obj):
        return "fluentbit-kmsg"
    if "message" in obj and ("_TRANSPORT" in obj or obj.get("source_type") == "journald"):
        return "vector-journald"
    systemd = obj.get("systemd")
    if "message" in obj and isinstance(systemd, dict) and "transport" in systemd:
        return "filebeat-journald"
    if _first(obj, _MESSAGE_KEYS) is not None and _first(obj, _FACILITY_KEYS) is not None:
        return "syslog-json"
    if isinstance(obj.get("message"), str) or isinstance(obj.get("log"), str):
        return "line"
    if isinstance(obj.get("MESSAGE"), str):
        return "syslog-json"  # syslog-ng format-json without FACILITY: framed, then untrusted
    return None


_MESSAGE_KEYS = ("msg", "message", "MESSAGE", "MSG")
_FACILITY_KEYS = ("facility", "syslogfacility", "syslogfacility-text", "FACILITY", "facility_num")
_LEVEL_KEYS = ("severity", "syslogseverity", "syslogseverity-text", "PRIORITY", "LEVEL", "level", "priority")
_TAG_KEYS = ("programname", "program", "PROGRAM", "app_name", "appname", "syslogtag", "tag", "ident")
_HOST_KEYS = ("hostname", "host", "HOST", "fromhost", "_HOSTNAME", "source_host")
_TIME_KEYS = ("timereported", "timestamp", "@timestamp", "ISODATE", "time", "date", "DATE")


class EnvelopeFramer:
    """Frames shipper records (decoded JSON objects or bare lines) of one connection or request.

    ``default_host`` names records whose envelope does not (the peer address, say); one instance
    keeps one ``Framer`` so continuation lines and counters behave as for a local input.
    """

    def __init__(
        self,
        framer: Framer,
        *,
        default_host: str | None = None,
    ) -> None:
        self.framer = framer
        self.default_host = default_host
        self.shapes: Counter[str] = Counter()

    @property
    def skipped(self) -> Tally:
        """The framer's skipped lines (``ENVELOPE_SKIPS``), envelope problems included."""
        return self.framer.skipped

    def frame_line(self, line: bytes | str, position: SourcePosition) -> KernelRecord | None:
        """A syslog message or a raw log line; the host defaults to ``default_host``."""
        record = self.framer.frame(line, position.offset)
        return None if record is None else self._finish(record, position)

    def frame_object(self, obj: object, position: SourcePosition) -> KernelRecord | None:
        """One JSON record of a shipper (NDJSON line, Kafka value)."""
        if not isinstance(obj, dict):
            self.skipped["bad_envelope"] += 1
            return None
        shape = envelope_shape(obj)
        if shape is None:
            self.skipped["bad_envelope"] += 1
            return None
        self.shapes[shape] += 1
        record: KernelRecord | None
        if shape == "journald":
            record = self.framer.frame_journal_entry(obj, position)
        elif shape == "vector-journald":
            record = self.framer.frame_journal_entry(_vector_journal_entry(obj), position)
        elif shape == "filebeat-journald":
            record = self.framer.frame_journal_entry(_filebeat_journal_entry(obj), position)
        elif shape == "fluentbit-kmsg":
            record = self._fluentbit_kmsg(obj, position)
        elif shape == "syslog-json":
            record = self._syslog_json(obj, position)
        else:
            return self._line(obj, position)
        if record is None:
            return None
        self.framer.records_by_format[record.format] += 1
        return self._finish(record, position)

    # -- shapes ------------------------------------------------------------------------------
    def _line(self, obj: dict[str, Any], position: SourcePosition) -> KernelRecord | None:
        message = obj.get("message")
        if not isinstance(message, str):
            message = obj.get("log")
        assert isinstance(message, str)
        record = self.framer.frame(message.rstrip("\n"), position.offset)
        if record is None:
            return None
        host = _host_of(obj)
        if record.host is None and host is not None:
            record = record._replace(host=host)
        if record.wall_time is None:
            wall = _time_of(obj)
            if wall is not None:
                record = record._replace(wall_time=wall, time_source="shipper")
        return self._finish(record, position)

    def _fluentbit_kmsg(self, obj: dict[str, Any], position: SourcePosition) -> KernelRecord | None:
        message = obj.get("msg")
        if not isinstance(message, str):
            self.skipped["bad_envelope"] += 1
            return None
        sec, usec = _number(obj.get("sec")), _number(obj.get("usec"))
        kernel_time = None if sec is None else sec + (usec or 0) / 1_000_000
        seq = _number(obj.get("sequence"))
        level = _number(obj.get("priority"))
        # in_kmsg keeps only the level (FLB_KLOG_PRI masks the facility away), so a line user
        # space wrote to /dev/kmsg cannot be told apart here: the kmsg input itself is trusted.
        return KernelRecord(
            message=message.rstrip("\n"),
            format="fluentbit-kmsg",
            kernel_time=kernel_time,
            wall_time=_time_of(obj),
            time_source="shipper" if _time_of(obj) is not None else None,
            host=_host_of(obj),
            boot_id=_str(obj.get("boot_id")) or _str(obj.get("_BOOT_ID")) or self.framer.boot_id,
            facility=0,
            level=None if level is None else int(level),
            trusted=True,
            position=position._replace(seq=None if seq is None else int(seq)),
        )

    def _syslog_json(self, obj: dict[str, Any], position: SourcePosition) -> KernelRecord | None:
        message = _first(obj, _MESSAGE_KEYS)
        if not isinstance(message, str):
            self.skipped["bad_envelope"] += 1
            return None
        facility = _facility(_first(obj, _FACILITY_KEYS))
        tag = _first(obj, _TAG_KEYS)
        tag_text = tag.rstrip(":").split("[", 1)[0] if isinstance(tag, str) else None
        if facility != 0 or (tag_text is not None and tag_text != "kernel"):
            self.skipped["not_kernel" if facility != 0 else "untrusted"] += 1
            if _looks_like_oom(message):
                self.skipped["untrusted_oom_line"] += 1
            return None
        kernel_time, message = _kernel_stamp(message.rstrip("\n"))
        wall = _time_of(obj)
        level = _level(_first(obj, _LEVEL_KEYS))
        return KernelRecord(
            message=message,
            format="syslog-json",
            kernel_time=kernel_time,
            wall_time=wall,
            time_source="syslog" if wall is not None else None,
            host=_host_of(obj),
            boot_id=_str(obj.get("boot_id")) or self.framer.boot_id,
            facility=0,
            level=level,
            trusted=True,
            position=position._replace(seq=_int_or_none(obj.get("sequnum"))),
        )

    def _finish(self, record: KernelRecord, position: SourcePosition) -> KernelRecord:
        if record.host is None and self.default_host is not None:
            record = record._replace(host=self.default_host)
        if record.position is None or record.position.kind != position.kind:
            record = record._replace(position=position)
        elif record.position.path is None and position.path is not None:
            # The partition a Kafka record came from (the inner framer knows only offsets).
            record = record._replace(position=record.position._replace(path=position.path))
        return record


def _vector_journal_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """Vector's journald event as journald names: ``message`` is MESSAGE, ``host`` _HOSTNAME,
    ``timestamp`` the entry's time; the journald fields themselves are kept as they are."""
    entry = dict(obj)
    entry["MESSAGE"] = obj.get("message")
    if "_HOSTNAME" not in entry and isinstance(obj.get("host"), str):
        entry["_HOSTNAME"] = obj["host"]
    if "__REALTIME_TIMESTAMP" not in entry:
        wall = _time_of(obj)
        if wall is not None:
            entry["__REALTIME_TIMESTAMP"] = str(round(wall * 1_000_000))
    return entry


_FILEBEAT_SYSLOG_FIELDS = (
    ("facility", "SYSLOG_FACILITY"),
    ("priority", "PRIORITY"),
    ("identifier", "SYSLOG_IDENTIFIER"),
)


def _filebeat_journal_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """Filebeat's journald event (ECS names, see beats input/journald/pkg/journalfield) back
    into journald names."""
    host, systemd, syslog = (_mapping(obj.get(key)) for key in ("host", "systemd", "syslog"))
    entry: dict[str, Any] = {"MESSAGE": obj.get("message"), "_TRANSPORT": systemd.get("transport")}
    hostname = host.get("hostname") or host.get("name")
    if isinstance(hostname, str):
        entry["_HOSTNAME"] = hostname
    if isinstance(host.get("boot_id"), str):
        entry["_BOOT_ID"] = host["boot_id"]
    for source, target in _FILEBEAT_SYSLOG_FIELDS:
        value = syslog.get(source)
        if value is not None:
            entry[target] = str(value)
    wall = _time_of(obj)
    if wall is not None:
        entry["__REALTIME_TIMESTAMP"] = str(round(wall * 1_000_000))
    return entry


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int_or_none(value: object) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _facility(value: object) -> int | None:
    if isinstance(value, str):
        name = value.strip().lower()
        if name in _FACILITY_NAMES:
            return _FACILITY_NAMES[name]
    number = _number(value)
    return None if number is None else int(number)


def _level(value: object) -> int | None:
    if isinstance(value, str) and value.strip().lower() in _LEVEL_NAMES:
        return _LEVEL_NAMES[value.strip().lower()]
    number = _number(value)
    return None if number is None or not 0 <= number <= 7 else int(number)


def _host_of(obj: dict[str, Any]) -> str | None:
    value = _first(obj, _HOST_KEYS)
    if isinstance(value, dict):  # ECS: host.name / host.hostname
        value = value.get("hostname") or value.get("name")
    return value if isinstance(value, str) and value else None


def _time_of(obj: dict[str, Any]) -> float | None:
    value = _first(obj, _TIME_KEYS)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        # Fluent Bit's json_date_key is Unix seconds (double); milliseconds are told apart by size.
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        return iso_seconds(value)
    return None


def iso_seconds(text: str) -> float | None:
    """RFC 3339 / ISO 8601 with up to nanoseconds (Vector prints nine digits) to Unix seconds."""
    match = _ISO.match(text.strip())
    if match is None:
        return None
    try:
        moment = datetime.fromisoformat(match.group(1).replace(" ", "T")).replace(tzinfo=UTC)
    except ValueError:
        return None
    seconds = moment.timestamp() + int((match.group(2) or "0")[:6].ljust(6, "0")) / 1_000_000
    zone = match.group(3)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:4]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    return seconds


def _kernel_stamp(message: str) -> tuple[float | None, str]:
    """The printk time a relayed dmesg-style line starts with, and the message after it."""
    match = _DMESG.match(message)
    if match is None:
        return None, message
    return float(match.group(1)), message[match.end() :]
