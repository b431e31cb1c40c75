"""The list+watch loop (the core of an informer / client-go Reflector).

list (paginated) -> ``handler.replace(all objects, rv)`` -> watch from that resourceVersion with
bookmarks -> on a normal end of the watch (``timeoutSeconds``) re-watch from the last resourceVersion
seen (events and BOOKMARKs both advance it) without relisting -> on 410 Gone (in the stream or as the
HTTP status) relist -> on a dropped connection, a stalled stream (no byte for ``stall_timeout_seconds``;
bookmarks keep a healthy watch talking) or any retriable error, re-watch from the last resourceVersion
after an exponential backoff with jitter, reset once a request succeeds again.

The first list asks for ``resourceVersion=0`` (served from the API server's watch cache: cheap when one
watcher runs per node); a relist after 410 asks for the most recent state (unset resourceVersion), as
client-go does, because the cache itself may be what is behind.

Non-retriable errors (403 RBAC, 401 after re-reading the token, 404, TLS/config trouble) propagate out
of :meth:`ListWatcher.run`: they need an operator, not a retry loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from parsers.telemetry import Count, Tally, Telemetry
from streamer.kube.api import KUBE_API_TELEMETRY, KubeApi, KubeApiError

LIST_WATCH_TELEMETRY = KUBE_API_TELEMETRY + Telemetry(
    "list_watch",
    (
        Count("lists", "lists done"),
        Count("events", "watch events handled"),
        Count("bookmarks", "watch bookmarks"),
        Count("watch_restarts", "watches restarted"),
        Count("relists_410", "relists after 410 Gone"),
        Count("stalls", "watches that said nothing for the stall timeout"),
        Count("errors_decode", "watch lines that did not decode"),
        Count("errors_handler", "objects the handler failed on"),
        Count("errors_{}", "API errors, by class (connection, timeout, gone, ...)"),
    ),
)

__all__ = ["ListWatcher", "WatchHandler", "error_class"]

log = logging.getLogger(__name__)

_WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})


class WatchHandler(Protocol):
    def replace(self, objects: list[dict[str, Any]], resource_version: str) -> None:
        """After every (re)list: the full current state (objects with kind/apiVersion filled in)."""

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        """ADDED / MODIFIED / DELETED, in resourceVersion order, objects with kind/apiVersion filled in."""


def error_class(e: KubeApiError) -> str:
    """A short, bounded label for counters: errors_<class>."""
    if e.status is None:
        return {
            "ConnectionError": "connection",
            "Timeout": "timeout",
            "Stalled": "stalled",
            "TLSError": "tls",
            "InvalidResponse": "invalid_response",
            "ConfigError": "config",
        }.get(e.reason or "", "other")
    if e.status == 410:
        return "gone"
    if e.status == 401:
        return "unauthorized"
    if e.status == 403:
        return "forbidden"
    if e.status == 429:
        return "throttled"
    if e.status >= 500:
        return "server"
    return f"http_{e.status}"


class _Throttle:
    """At most one log record per key and interval; says how many were suppressed."""

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()

    def __call__(self, key: str) -> tuple[bool, int]:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] += 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)


class ListWatcher:
    def __init__(
        self,
        api: KubeApi,
        *,
        path: str,
        params: Mapping[str, str],
        handler: WatchHandler,
        name: str,
        kind: str,
        api_version: str,
        watch_timeout_seconds: float = 300.0,
        stall_timeout_seconds: float = 90.0,
        page_size: int = 500,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        log_interval_seconds: float = 30.0,
    ) -> None:
        self._api = api
        self._path = path
        self._params = {k: v for k, v in params.items() if k not in ("watch", "resourceVersion", "continue")}
        self._handler = handler
        self.name = name
        self._kind = kind
        self._api_version = api_version
        self._watch_timeout = watch_timeout_seconds
        self._stall_timeout = stall_timeout_seconds
        self._page_size = page_size
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds
        self._failures = 0
        self._throttle = _Throttle(log_interval_seconds)
        self._progress = False

        self.synced = asyncio.Event()
        self.resource_version: str | None = None
        self.counts: Tally = LIST_WATCH_TELEMETRY.tally()
        self.state = "idle"  # listing | watching | backoff | failed

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """List and watch until cancelled. Retriable trouble is retried forever; a non-retriable
        :class:`KubeApiError` (RBAC, credentials, config) is raised."""
        need_list = True
        list_rv = "0"
        consecutive_gone = 0
        try:
            while True:
                self._progress = False
                try:
                    if need_list:
                        await self._list(list_rv)
                        need_list = False
                        self._failures = 0
                    else:
                        self.counts["watch_restarts"] += 1
                    started = time.monotonic()
                    await self._watch()
                    # A normal end (timeoutSeconds): re-watch from the last resourceVersion at once. A
                    # quiet watch is normal (bookmarks are optional); only one that ends immediately
                    # without a byte is suspicious: do not spin on a misbehaving server.
                    if self._progress or time.monotonic() - started >= 1.0:
                        self._failures = 0
                        consecutive_gone = 0
                    else:
                        await self._backoff(None, "watch ended at once without data")
                except KubeApiError as e:
                    self.counts[f"errors_{error_class(e)}"] += 1
                    if self._progress:
                        self._failures = 0
                    if e.gone:
                        self.counts["relists_410"] += 1
                        consecutive_gone += 1
                        need_list = True
                        list_rv = ""  # most recent: the watch cache may be the thing that is behind
                        self._log(logging.INFO, "gone", "%s: %s; relisting", self.name, e)
                        if consecutive_gone > 1:
                            await self._backoff(e, "repeated 410")
                        continue
                    if not e.retriable:
                        self.state = "failed"
                        log.error("%s: giving up: %s", self.name, e)
                        raise
                    if e.reason == "Stalled":
                        self.counts["stalls"] += 1
                    await self._backoff(e, "list" if need_list else "watch")
        finally:
            if self.state != "failed":
                self.state = "idle"

    async def _backoff(self, error: KubeApiError | None, what: str) -> None:
        self._failures += 1
        # initial * 2^(n-1), capped, plus up to `initial` of jitter (spreads reconnects of many nodes).
        exponential = self._backoff_initial * 2.0 ** min(self._failures - 1, 64)
        jitter = random.uniform(0, self._backoff_initial)
        delay = min(min(exponential, self._backoff_max) + jitter, self._backoff_max)
        if error is not None and error.retry_after:
            delay = max(delay, min(error.retry_after, self._backoff_max))
        self.state = "backoff"
        if error is not None:
            self._log(
                logging.WARNING,
                f"error:{error_class(error)}",
                "%s: %s failed (%s), retrying in %.1fs (attempt %d)",
                self.name,
                what,
                error,
                delay,
                self._failures,
            )
        else:
            self._log(logging.WARNING, what, "%s: %s, retrying in %.1fs", self.name, what, delay)
        await asyncio.sleep(delay)

    def _log(self, level: int, key: str, msg: str, *args: object) -> None:
        ok, suppressed = self._throttle(key)
        if not ok:
            return
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        log.log(level, msg, *args)

    # ------------------------------------------------------------------ list

    async def _list(self, resource_version: str) -> None:
        self.state = "listing"
        base = dict(self._params)
        base["limit"] = str(self._page_size)
        if resource_version:
            base["resourceVersion"] = resource_version
        items: list[dict[str, Any]] = []
        list_rv: str | None = None
        cont: str | None = None
        pages = 0
        while True:
            params = dict(base)
            if cont:
                # The continue token carries the snapshot; resourceVersion must not be sent with it.
                params["continue"] = cont
                params.pop("resourceVersion", None)
                params.pop("resourceVersionMatch", None)
            body = await self._api.get_json(self._path, params, stats=self.counts)
            pages += 1
            meta = body.get("metadata") or {}
            list_rv = str(meta.get("resourceVersion") or "") or list_rv
            for item in body.get("items") or ():
                if isinstance(item, dict):
                    item.setdefault("kind", self._kind)
                    item.setdefault("apiVersion", self._api_version)
                    items.append(item)
            cont = meta.get("continue") or None
            if not cont:
                break
        if not list_rv:
            raise KubeApiError(
                f"list of {self._path} has no metadata.resourceVersion",
                reason="InvalidResponse",
                retriable=True,
            )
        self.counts["lists"] += 1
        try:
            self._handler.replace(items, list_rv)
        except Exception:
            self.counts["errors_handler"] += 1
            log.exception("%s: handler.replace failed", self.name)
        self.resource_version = list_rv
        first = not self.synced.is_set()
        self.synced.set()
        self._log(
            logging.INFO,
            "listed",
            "%s: %s %d objects at resourceVersion %s (%d page%s)",
            self.name,
            "listed" if first else "relisted",
            len(items),
            list_rv,
            pages,
            "" if pages == 1 else "s",
        )

    # ------------------------------------------------------------------ watch

    async def _watch(self) -> None:
        assert self.resource_version is not None
        self.state = "watching"
        timeout = max(1, round(self._watch_timeout * random.uniform(1.0, 1.25)))  # spread reconnects
        params = dict(self._params)
        params.pop("limit", None)
        params.update(
            {
                "watch": "true",
                "resourceVersion": self.resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(timeout),
            }
        )
        lines = self._api.stream_lines(
            self._path, params, read_timeout_seconds=self._stall_timeout, stats=self.counts
        )
        async with contextlib.aclosing(lines):
            async for line in lines:
                self._progress = True
                self._handle_line(line)

    def _bad_line(self, line: bytes, why: str) -> None:
        self.counts["errors_decode"] += 1
        self._log(logging.WARNING, "decode", "%s: skipping watch line (%s): %.200r", self.name, why, line)

    def _handle_line(self, line: bytes) -> None:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            self._bad_line(line, f"not JSON: {e}")
            return
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            self._bad_line(line, "not a watch event")
            return
        event_type = event.get("type")
        obj: dict[str, Any] = event["object"]
        if event_type in _WATCH_EVENT_TYPES:
            obj.setdefault("kind", self._kind)
            obj.setdefault("apiVersion", self._api_version)
            self.counts["events"] += 1
            try:
                self._handler.apply(event_type, obj)
            except Exception:
                self.counts["errors_handler"] += 1
                log.exception("%s: handler.apply(%s) failed", self.name, event_type)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
        elif event_type == "BOOKMARK":
            self.counts["bookmarks"] += 1
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
        elif event_type == "ERROR":
            code = obj.get("code")
            status = code if isinstance(code, int) else None
            raise KubeApiError(
                f"watch {self._path}: {obj.get('message', 'error event')}",
                status=status,
                reason=obj.get("reason") or None,
                # In-stream errors other than 410 are the server's trouble (etcd, cache): retry.
                retriable=status != 410,
            )
        else:
            self._bad_line(line, f"unknown event type {event_type!r}")
