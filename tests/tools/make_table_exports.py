"""Build the table-export fixtures in tests/data/exports from a real capture's journald export.

Each file holds the same records as ``tests/data/real/<name>.journal.json`` (genuine kernel output,
see tests/data/real/README.md), laid out the way a log-search UI exports them, newest first as
their default sort is. The layouts follow the tools' documented output:

- ``.kibana-table.txt``: rows copied from Kibana Discover with the columns host.name,
  process.name and message; time in Kibana's default ``dateFormat`` (``MMM D, YYYY @
  HH:mm:ss.SSS``), cells separated by `` | ``.
- ``.kibana.csv``: a Kibana saved-search CSV report (``"@timestamp","host.name","process.name",
  "message"``, every cell quoted).
- ``.splunk.csv``: a Splunk search exported as CSV (``"_time","host","source","_raw"``; ``_raw`` is
  the line as rsyslog wrote /var/log/kern.log, kernel stamp included).
- ``.logcli.txt``: ``logcli query`` default output (``<RFC 3339> {labels} <line>``, newest first,
  second resolution, so whole reports share one time); ``.logcli.jsonl``: ``--output=jsonl``
  (``{"labels": {...}, "line": ..., "timestamp": <RFC 3339 ns>}``).
- ``.elasticsearch.ndjson``: search hits as Elasticsearch returns them (``_index``, ``_source`` with
  the ECS fields ``@timestamp``, ``host.name``, ``process.name``, ``message``), one per line.

Usage: python tests/tools/make_table_exports.py tests/data/real/s08-storm.journal.json tests/data/exports
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from datetime import UTC, datetime


def main() -> None:
    source, out_dir = sys.argv[1], sys.argv[2]
    name = os.path.basename(source).removesuffix(".journal.json")
    with open(source, encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle]
    rows = []
    for entry in entries:
        message = entry["MESSAGE"]
        if not isinstance(message, str):
            continue  # a byte-array MESSAGE has no text form an export could show
        moment = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
        mono = int(entry.get("_SOURCE_MONOTONIC_TIMESTAMP") or entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        rows.append((moment, entry["_HOSTNAME"], entry["SYSLOG_IDENTIFIER"], mono, message))
    rows.sort(key=lambda row: row[0], reverse=True)  # newest first, the UIs' default

    def stamped(ident: str, mono: float, message: str) -> str:
        return f"[{mono:12.6f}] {message}" if ident == "kernel" else message

    with open(os.path.join(out_dir, f"{name}.kibana-table.txt"), "w", encoding="utf-8") as handle:
        for moment, host, ident, mono, message in rows:
            kibana = moment.strftime("%b ") + str(moment.day) + moment.strftime(", %Y @ %H:%M:%S.")
            kibana += f"{moment.microsecond // 1000:03d}"
            handle.write(f"{kibana} | {host} | {ident} | {stamped(ident, mono, message)}\n")

    def write_csv(path: str, header: list[str], body: list[list[str]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())

    write_csv(
        os.path.join(out_dir, f"{name}.kibana.csv"),
        ["@timestamp", "host.name", "process.name", "message"],
        [
            [
                moment.strftime("%b ") + str(moment.day) + moment.strftime(", %Y @ %H:%M:%S.")
                + f"{moment.microsecond // 1000:03d}",
                host, ident, stamped(ident, mono, message),
            ]
            for moment, host, ident, mono, message in rows
        ],
    )  # fmt: skip

    def kern_log(moment: datetime, host: str, ident: str, mono: float, message: str) -> str:
        return (
            f"{moment.strftime('%b')} {moment.day:2d} {moment.strftime('%H:%M:%S')} {host} {ident}: "
            + stamped(ident, mono, message)
        )

    write_csv(
        os.path.join(out_dir, f"{name}.splunk.csv"),
        ["_time", "host", "source", "_raw"],
        [
            [moment.isoformat(timespec="milliseconds"), host, "/var/log/kern.log", kern_log(*row)]
            for row in rows
            for moment, host in [(row[0], row[1])]
        ],
    )
    with open(os.path.join(out_dir, f"{name}.elasticsearch.ndjson"), "w", encoding="utf-8") as handle:
        for moment, host, ident, mono, message in rows:
            source = {
                "@timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "host": {"name": host},
                "process": {"name": ident},
                "message": stamped(ident, mono, message),
            }
            handle.write(json.dumps({"_index": "logs-kernel", "_source": source}, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, f"{name}.logcli.jsonl"), "w", encoding="utf-8") as handle:
        for row in rows:
            labels = {"filename": "/var/log/kern.log", "host": row[1], "job": "varlogs"}
            stamp = row[0].strftime("%Y-%m-%dT%H:%M:%S.") + f"{row[0].microsecond:06d}000Z"
            handle.write(json.dumps({"labels": labels, "line": kern_log(*row), "timestamp": stamp}) + "\n")
    with open(os.path.join(out_dir, f"{name}.logcli.txt"), "w", encoding="utf-8") as handle:
        for row in rows:
            moment, host = row[0], row[1]
            labels = f'{{filename="/var/log/kern.log", host="{host}", job="varlogs"}}'
            handle.write(f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} {labels} {kern_log(*row)}\n")


if __name__ == "__main__":
    main()
