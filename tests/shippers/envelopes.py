"""Shipper records built from kernel log lines the way each shipper documents its output.

Fluent Bit, Vector and Filebeat do not install on the test machines; tests/data/shippers/README.md
cites the documentation (and source) of every field used here. Input: dmesg-style lines
(``[ 123.456789] message``); each builder returns one JSON object per line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_DMESG = re.compile(r"\[\s*(\d+)\.(\d+)\] ?(.*)")
BOOT_TIME = 1_764_800_000.0  # the wall clock at kernel time 0 in these records
BOOT_ID = "0f0e0d0c0b0a09080706050403020100"


def _split(line: str) -> tuple[int, int, str]:
    match = _DMESG.match(line)
    assert match is not None, f"not a dmesg line: {line!r}"
    return int(match.group(1)), int(match.group(2).ljust(6, "0")[:6]), match.group(3)


def _rfc3339(seconds: float, digits: int = 6) -> str:
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text + ("000" if digits == 9 else "") + "Z"


def fluentbit_kmsg(line: str, seq: int, host: str) -> dict[str, Any]:
    """in_kmsg's record body plus the http output's ``date`` key and a record_modifier host."""
    sec, usec, message = _split(line)
    return {
        "date": BOOT_TIME + sec + usec / 1e6,
        "priority": 6,
        "sequence": seq,
        "sec": sec,
        "usec": usec,
        "msg": message,
        "hostname": host,
    }


def _journal_fields(line: str, seq: int, host: str, *, transport: str = "kernel") -> dict[str, Any]:
    sec, usec, message = _split(line)
    monotonic = sec * 1_000_000 + usec
    return {
        "MESSAGE": message,
        "PRIORITY": "6",
        "SYSLOG_FACILITY": "0",
        "SYSLOG_IDENTIFIER": "kernel",
        "_TRANSPORT": transport,
        "_HOSTNAME": host,
        "_BOOT_ID": BOOT_ID,
        "_SOURCE_MONOTONIC_TIMESTAMP": str(monotonic),
        "__REALTIME_TIMESTAMP": str(round((BOOT_TIME + sec + usec / 1e6) * 1e6)),
        "__CURSOR": f"s=ab;i={seq:x}",
    }


def fluentbit_systemd(line: str, seq: int, host: str) -> dict[str, Any]:
    """in_systemd keeps journald's field names; the http output adds ``date``."""
    fields = _journal_fields(line, seq, host)
    fields["date"] = int(fields["__REALTIME_TIMESTAMP"]) / 1e6
    del fields["__CURSOR"]
    return fields


def vector_journald(line: str, seq: int, host: str) -> dict[str, Any]:
    """Vector's journald source: MESSAGE becomes ``message``, _HOSTNAME ``host``, plus ``timestamp``."""
    fields = _journal_fields(line, seq, host)
    message = fields.pop("MESSAGE")
    realtime = int(fields["__REALTIME_TIMESTAMP"]) / 1e6
    return {
        **fields,
        "message": message,
        "host": host,
        "timestamp": _rfc3339(realtime, digits=9),
        "source_type": "journald",
    }


def vector_file(line: str, seq: int, host: str) -> dict[str, Any]:
    """Vector's file source on a dmesg-style kernel log file: the line is ``message``."""
    sec, usec, _ = _split(line)
    return {
        "file": "/var/log/dmesg",
        "host": host,
        "message": line,
        "source_type": "file",
        "timestamp": _rfc3339(BOOT_TIME + sec + usec / 1e6 + 0.5, digits=9),
    }


def filebeat_journald(line: str, seq: int, host: str) -> dict[str, Any]:
    """Filebeat's journald input (ECS names after beats' journalfield conversion)."""
    sec, usec, message = _split(line)
    return {
        "@timestamp": _rfc3339(BOOT_TIME + sec + usec / 1e6),
        "message": message,
        "host": {"hostname": host, "boot_id": BOOT_ID, "name": host},
        "systemd": {"transport": "kernel"},
        "syslog": {"facility": 0, "priority": 6, "identifier": "kernel"},
        "input": {"type": "journald"},
    }


def rsyslog_json(line: str, seq: int, host: str) -> dict[str, Any]:
    """The rsyslog JSON template of README (imkmsg: ``$!sequnum``; the kernel stamp kept in msg)."""
    sec, usec, _ = _split(line)
    return {
        "timereported": _rfc3339(BOOT_TIME + sec + usec / 1e6),
        "hostname": host,
        "facility": "kern",
        "severity": "info",
        "programname": "kernel",
        "sequnum": seq,
        "msg": line,
    }


def syslog_ng_json(line: str, seq: int, host: str) -> dict[str, Any]:
    """syslog-ng ``$(format-json --scope rfc5424 --key ISODATE)`` on a kernel message."""
    sec, usec, _ = _split(line)
    return {
        "PROGRAM": "kernel",
        "PRIORITY": "info",
        "MESSAGE": line,
        "ISODATE": _rfc3339(BOOT_TIME + sec + usec / 1e6).replace("Z", "+00:00"),
        "HOST": host,
        "FACILITY": "kern",
    }


BUILDERS: dict[str, Callable[[str, int, str], dict[str, Any]]] = {
    "fluentbit-kmsg": fluentbit_kmsg,
    "fluentbit-systemd": fluentbit_systemd,
    "vector-journald": vector_journald,
    "vector-file": vector_file,
    "filebeat-journald": filebeat_journald,
    "rsyslog-json": rsyslog_json,
    "syslog-ng-json": syslog_ng_json,
}
# Which builders carry the kernel's monotonic stamp (their event ids equal `oomstream parse`'s
# on the dmesg file; Filebeat drops the stamp, so its ids rest on the wall time).
KEEPS_KERNEL_TIME = {
    "fluentbit-kmsg",
    "fluentbit-systemd",
    "vector-journald",
    "vector-file",
    "rsyslog-json",
    "syslog-ng-json",
}


def dmesg_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if _DMESG.match(line)]
