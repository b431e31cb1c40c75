"""Kubernetes objects as JSON lines (files, stdin) turned into signals: a ``SignalSource``.

Each line holds one JSON document (``ObjectLineDecoder`` is shared with the Kafka source):

- a bare object: core/v1 Event, events.k8s.io/v1 Event, core/v1 Pod (``kubectl get -o json``
  compacted, or what an exporter writes);
- a watch event ``{"type": "ADDED", "object": {...}}`` (``kubectl get -w -o json``, the watch API),
  handed to the tracker as it is, so it sees the event type;
- an exporter envelope ``{"event": {...}}`` or ``{"object": {...}}`` (without a watch type);
- an object without ``kind``/``apiVersion``: kubernetes-event-exporter and client-go informers
  marshal objects without their TypeMeta, so the kind is inferred from the fields only that
  kind has (``involvedObject``: core/v1 Event; ``regarding``: events.k8s.io/v1 Event;
  ``spec.containers`` / ``status.containerStatuses``: Pod);
- a list (``kind: PodList``, ``EventList``, ``List``): each of its ``items``.

Bad input never stops the source and is never silent: lines that are not JSON, not UTF-8, or not
an object count as ``bad_lines`` (plus ``bad_json`` / ``bad_utf8`` / ``not_object``), lines over
``max_line_bytes`` as ``long_lines`` (their first bytes are all that is kept, so they cannot be
parsed), valid objects of no known shape as ``skipped_unrecognized``; each is logged as a warning
at most once per ``LOG_INTERVAL_SECONDS`` per reason, with how many were held back.

Reading, following (rotation, truncation, a file that does not exist yet), gzip backfill and stdin
(pipe or redirected file) are ``streamer.sources.files.FileSource``'s: its ``lines()`` come here
instead of to the kernel-log framer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from parsers.events import K8sEvent, Source
from parsers.k8s import SignalTracker
from parsers.telemetry import Count, Tally, Telemetry
from streamer.logging_setup import RateLimiter
from streamer.sources.base import ClosingSource
from streamer.sources.files import FILES_TELEMETRY, MAX_LINE_BYTES, FileIdentity, FileSource

# What ObjectLineDecoder counts, in the tally of the source it decodes for.
OBJECT_LINES_TELEMETRY = Telemetry(
    "k8s_object_lines",
    (
        Count("objects", "Kubernetes objects read"),
        Count("signals", "signals the tracker made of them"),
        Count("blank_lines", "blank lines"),
        Count("bad_lines", "lines that are not a JSON object"),
        Count("bad_json", "lines that are not JSON"),
        Count("bad_utf8", "lines that are not UTF-8"),
        Count("not_object", "JSON lines that are not an object"),
        Count("skipped_unrecognized", "objects the tracker does not recognize"),
        Count("tracker_errors", "objects the tracker failed on"),
        Count(
            "long_lines",
            "object lines longer than the limit, skipped",
            bound="k8s_object_long_lines",
        ),
    ),
)
K8S_FILE_TELEMETRY = FILES_TELEMETRY + OBJECT_LINES_TELEMETRY

log = logging.getLogger("oomstream.sources.k8s_objects")

FORMAT = "k8s_json"
LOG_INTERVAL_SECONDS = 10.0
WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
_MAX_NESTING = 4  # envelope levels unwrapped: {"event": {"type": ..., "object": {...}}} is 2
_PREVIEW_BYTES = 120


class ObjectTracker(Protocol):
    """What the sources need of ``parsers.k8s.SignalTracker`` (the default; tests may pass a stand-in)."""

    counts: Tally

    def from_object(
        self, obj: dict[str, Any], *, source: Source, node: str | None = None
    ) -> list[K8sEvent]: ...


def default_tracker() -> ObjectTracker:
    """A fresh ``parsers.k8s.SignalTracker`` with its default bounds."""
    return SignalTracker()


def _infer_kind(doc: dict[str, Any]) -> dict[str, Any] | None:
    """``doc`` with the kind and apiVersion its fields imply, or None (no known shape)."""
    if isinstance(doc.get("involvedObject"), dict):
        return {**doc, "kind": "Event", "apiVersion": doc.get("apiVersion") or "v1"}
    if isinstance(doc.get("regarding"), dict) or ("note" in doc and "reportingController" in doc):
        return {**doc, "kind": "Event", "apiVersion": doc.get("apiVersion") or "events.k8s.io/v1"}
    spec, status = doc.get("spec"), doc.get("status")
    if (isinstance(spec, dict) and isinstance(spec.get("containers"), list)) or (
        isinstance(status, dict) and isinstance(status.get("containerStatuses"), list)
    ):
        return {**doc, "kind": "Pod", "apiVersion": doc.get("apiVersion") or "v1"}
    return None


def unwrap_objects(doc: dict[str, Any], _depth: int = 0) -> list[dict[str, Any]] | None:
    """The objects to give the tracker for one JSON document; None when it has no known shape.

    Watch events stay wrapped (their ``type`` matters: a DELETED pod is not a new signal);
    exporter envelopes and lists are opened.
    """
    if _depth > _MAX_NESTING:
        return None
    kind = doc.get("kind")
    if isinstance(kind, str) and kind:
        items = doc.get("items")
        if kind.endswith("List") and isinstance(items, list):
            out: list[dict[str, Any]] = []
            item_kind = kind.removesuffix("List")
            for item in items:
                if not isinstance(item, dict):
                    continue
                if item_kind and not item.get("kind"):
                    item = {
                        **item,
                        "kind": item_kind,
                        "apiVersion": item.get("apiVersion") or doc.get("apiVersion"),
                    }
                found = unwrap_objects(item, _depth + 1)
                if found:
                    out.extend(found)
            return out
        return [doc]
    inner = doc.get("object")
    if isinstance(inner, dict):
        found = unwrap_objects(inner, _depth + 1)
        watch_type = doc.get("type")
        if found is None or not (isinstance(watch_type, str) and watch_type in WATCH_TYPES):
            return found
        return [{"type": watch_type, "object": obj} for obj in found]
    inner = doc.get("event")
    if isinstance(inner, dict):
        return unwrap_objects(inner, _depth + 1)
    inferred = _infer_kind(doc)
    return None if inferred is None else [inferred]


class ObjectLineDecoder:
    """One line (or Kafka record value) of JSON -> Kubernetes objects -> signals, counted.

    Shared by the file and Kafka sources; ``where`` in the log messages is the caller's notion
    of a position ("path:line", "topic/partition@offset").
    """

    def __init__(
        self,
        name: str,
        counts: Tally,
        *,
        tracker: ObjectTracker | None,
        node: str | None,
        max_line_bytes: int,
    ) -> None:
        self.name = name
        self.counts = counts
        self.tracker = tracker if tracker is not None else default_tracker()
        self.node = node
        self.max_line_bytes = max_line_bytes
        self._limiter = RateLimiter(LOG_INTERVAL_SECONDS)

    def objects(self, line: bytes, where: str) -> list[dict[str, Any]]:
        """The objects of one line; bad lines are counted and logged, and give []."""
        counts = self.counts
        if len(line) > self.max_line_bytes:
            counts["long_lines"] += 1
            self._warn("long_line", where, f"longer than {self.max_line_bytes} bytes, skipped", line)
            return []
        if not line.strip():
            counts["blank_lines"] += 1
            return []
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            reason = "bad_json"
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                reason = "bad_utf8"
            counts["bad_lines"] += 1
            counts[reason] += 1
            self._warn(reason, where, f"not {'UTF-8' if reason == 'bad_utf8' else 'JSON'}: {error}", line)
            return []
        if not isinstance(doc, dict):
            counts["bad_lines"] += 1
            counts["not_object"] += 1
            self._warn("not_object", where, f"JSON {type(doc).__name__}, not an object", line)
            return []
        found = unwrap_objects(doc)
        if not found:
            counts["skipped_unrecognized"] += 1
            self._warn("unrecognized", where, "a JSON object of no known Kubernetes shape", line)
            return []
        counts["objects"] += len(found)
        return found

    def signals(self, objects: list[dict[str, Any]], source: Source, where: str) -> list[K8sEvent]:
        out: list[K8sEvent] = []
        for obj in objects:
            try:
                out.extend(self.tracker.from_object(obj, source=source, node=self.node))
            except Exception as error:  # the tracker's bug must not stop the node's signals
                self.counts["tracker_errors"] += 1
                self._warn("tracker_error", where, f"tracker failed: {error!r}", b"")
        self.counts["signals"] += len(out)
        return out

    def _warn(self, reason: str, where: str, what: str, line: bytes) -> None:
        held = self._limiter.check(reason)
        if held is None:
            return
        preview = line[:_PREVIEW_BYTES]
        log.warning(
            "%s: %s: %s%s%s",
            self.name, where, what,
            f"; line starts {preview!r}" if preview else "",
            f" ({held} more like it in the last {LOG_INTERVAL_SECONDS:.0f} s not logged)" if held else "",
            extra={"rate_key": (self.name, reason)},
        )  # fmt: skip


class K8sObjectLinesSource(ClosingSource):
    """Signals from Kubernetes objects as JSON lines in a file, or stdin with ``path="-"``.

    Without ``follow`` the file (plain or gzip) is read to its end and ``signals()`` ends;
    with it, the file is tailed across rotation and truncation like the kernel-log file source
    (``poll_seconds``). stdin is read to EOF. Positions are ``{"path", "offset", "line"}``:
    ``offset`` is the byte offset just past the line, ``line`` its 1-based number in that file
    (it restarts after a rotation or truncation).

    ``acknowledged`` does nothing: a file is not resumed from a commit, a restarted service
    reads it again, and the tracker's event ids are deterministic (object uid, occurrence), so
    what is read twice publishes the same ids and consumers drop the repeat.
    """

    def __init__(
        self,
        path: str,
        *,
        follow: bool = False,
        node: str | None = None,
        tracker: ObjectTracker | None = None,
        poll_seconds: float = 0.5,
        max_line_bytes: int = MAX_LINE_BYTES,
        stdin_fd: int = 0,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes}")
        self.stdin = path == "-"
        self.endless = follow
        self.kind = "k8s_stdin" if self.stdin else "k8s_file"
        # One byte more than the limit is kept, so a line over it is recognizable as such.
        self._reader = FileSource(
            path, follow=follow, poll_seconds=poll_seconds, max_line_bytes=max_line_bytes + 1,
            stdin_fd=stdin_fd,
        )  # fmt: skip
        self.path = "-" if self.stdin else self._reader.path
        self.name = "k8s-stdin" if self.stdin else f"k8s-file:{self.path}"
        self._reader.name = self.name
        # The reader's tally (lines, bytes, rotations, ...) is ours: one tally, both declarations.
        self.counts: Tally = K8S_FILE_TELEMETRY.tally()
        self._reader.counts = self.counts
        self._decoder = ObjectLineDecoder(
            self.name, self.counts, tracker=tracker, node=node, max_line_bytes=max_line_bytes
        )
        self._file_key: FileIdentity | None = None
        self._line = 0
        self._last_end = -1
        self._iterated = False

    @property
    def tracker(self) -> ObjectTracker:
        return self._decoder.tracker

    async def signals(self) -> AsyncIterator[K8sEvent]:
        if self._iterated:
            raise RuntimeError(f"{self.name}: signals() can be iterated only once")
        self._iterated = True
        async with contextlib.aclosing(self._reader.lines()) as batches:
            async for lines, identity in batches:
                for signal in self._take_lines(lines, identity):
                    yield signal

    def acknowledged(self, event: K8sEvent) -> None:
        """Nothing to commit: files are reread from their start, and rereading is harmless
        because the tracker gives the same signal the same event id (see the class doc)."""

    async def aclose(self) -> None:
        await self._reader.aclose()

    # -- lines -----------------------------------------------------------------------------------
    def _take_lines(self, lines: list[tuple[bytes, int]], identity: FileIdentity | None) -> list[K8sEvent]:
        """The signals of a chunk's lines."""
        self.counts["lines"] += len(lines)
        if identity != self._file_key:
            self._file_key, self._line, self._last_end = identity, 0, -1
        signals: list[K8sEvent] = []
        decoder = self._decoder
        for line, end in lines:
            if end <= self._last_end:  # the file was truncated and is read again from its start
                self._line = 0
            self._last_end = end
            self._line += 1
            where = f"line {self._line}"
            objects = decoder.objects(line, where)
            if objects:
                source = Source(
                    kind=self.kind, format=FORMAT,
                    position={"path": self.path, "offset": end, "line": self._line},
                )  # fmt: skip
                signals.extend(decoder.signals(objects, source, where))
        return signals
