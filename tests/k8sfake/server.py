"""A protocol-faithful fake Kubernetes API server (aiohttp.web) for list+watch clients.

What it reproduces from kube-apiserver (see the "API concepts" page, "Efficient detection of
changes", "Watch bookmarks", "Retrieving large results sets in chunks", and the watch cache):

* one global, monotonically increasing ``resourceVersion`` shared by every resource (etcd revision);
* list responses ``{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":...},"items":[...]}``
  whose items carry no ``kind``/``apiVersion``; ``limit``/``continue`` pagination over one consistent
  snapshot (the continue token names the snapshot's revision and the last key; it expires with 410 when
  that revision is compacted), ``remainingItemCount`` when no selector is used;
* list ``resourceVersion`` semantics: unset = most recent, ``"0"`` = any, ``N`` + ``NotOlderThan`` (or no
  match) = at least N, ``N`` + ``Exact`` = exactly N (410 if compacted, 504 "Too large resource
  version" if in the future);
* watch: newline-delimited JSON events ``{"type":...,"object":{...}}`` (objects with ``kind``/``apiVersion``),
  one event per chunk with chunked transfer encoding; from ``N``: every change after N in order, then
  live; from unset/``"0"``: synthetic ADDED for the current state, then live; ``sendInitialEvents=true``
  ends the initial state with a BOOKMARK annotated ``k8s.io/initial-events-end: "true"``;
* a watch from a compacted revision gets HTTP 200 and an in-stream
  ``{"type":"ERROR","object":{"kind":"Status",...,"reason":"Expired","code":410}}``, then EOF
  (``gone_as_http_status=True`` answers HTTP 410 instead, as an apiserver without watch cache does);
* field-/label-selector filtering the way the watch cache does it: an object that stops matching is sent
  as DELETED (previous content, new resourceVersion), one that starts matching as ADDED;
* BOOKMARK events (``allowWatchBookmarks=true``) whose object is an empty object of the watched kind with
  only ``metadata.resourceVersion`` set (plus the zero values Go's encoder writes);
* ``timeoutSeconds``: the server ends the stream cleanly after it;
* ``Authorization: Bearer <token>``; 401/403/404/410/429/5xx bodies are ``Status`` objects.

Test controls: :meth:`FakeApiServer.upsert`, :meth:`~FakeApiServer.delete`, :meth:`~FakeApiServer.compact`,
:meth:`~FakeApiServer.drop_connections`, :meth:`~FakeApiServer.stall_watches`,
:meth:`~FakeApiServer.rotate_token`, :meth:`~FakeApiServer.forbid`, :meth:`~FakeApiServer.inject_errors`,
:meth:`~FakeApiServer.send_raw_line`; :attr:`~FakeApiServer.requests` records every request.

Simplification: core/v1 Events and events.k8s.io/v1 Events are stored separately (the real server keeps
one storage and converts between the two versions).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import json
import re
import ssl
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["FakeApiServer", "RequestRecord", "TlsFiles", "make_tls_files"]

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    watch: bool
    status: int


@dataclass(frozen=True)
class _Resource:
    group_version: str
    kind: str
    plural: str
    namespaced: bool
    fields: tuple[str, ...]  # selectable field labels besides metadata.name / metadata.namespace

    @property
    def group(self) -> str:
        return self.group_version.split("/")[0] if "/" in self.group_version else ""

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_CORE_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_EVENTS_V1_FIELDS = (
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
)
# events.k8s.io accepts the core label names too and converts them.
_EVENTS_V1_ALIASES = {
    "involvedObject." + k: "regarding." + k
    for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
} | {"reportingComponent": "reportingController"}

RESOURCES: tuple[_Resource, ...] = (
    _Resource("v1", "Pod", "pods", True, _POD_FIELDS),
    _Resource("v1", "Event", "events", True, _CORE_EVENT_FIELDS),
    _Resource("events.k8s.io/v1", "Event", "events", True, _EVENTS_V1_FIELDS),
    _Resource("v1", "Node", "nodes", False, ("spec.unschedulable",)),
)
_BY_PATH = {(r.group_version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.group_version, r.kind): r for r in RESOURCES}

_RECORD = web.RequestKey("record", RequestRecord)

_PATH_RE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.\-]+)/(?P<version>v[a-z0-9]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?$"
)

_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may "
    "show up in the list."
)

ObjKey = tuple[str, str]  # (namespace, name)


def _dumps(obj: Any) -> bytes:
    # Go's encoding/json: compact, no spaces, non-ASCII kept as UTF-8.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _now_rfc3339() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; for an Event's scalar fields (count, lastTimestamp, message,
    series) a strategic merge patch gives the same result."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class _StatusError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


@dataclass
class _Change:
    rv: int
    resource: _Resource
    key: ObjKey
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]  # the new object (for DELETED: the final object, with the deletion RV)
    prev: dict[str, Any] | None


def _field_value(obj: dict[str, Any], label: str) -> str:
    # core Event's "source" is the one label whose name is not its JSON path
    path = ["source", "component"] if label == "source" else label.split(".")
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, actual: str | None) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        if self.op == "exists":
            return actual is not None
        return actual is None


def _parse_selector(text: str, *, labels: bool) -> list[_Requirement]:
    reqs: list[_Requirement] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(_Requirement(k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append(_Requirement(k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append(_Requirement(k.strip(), "=", v.strip()))
        elif labels and part.startswith("!"):
            reqs.append(_Requirement(part[1:].strip(), "!exists"))
        elif labels and re.fullmatch(r"[A-Za-z0-9./_\-]+", part):
            reqs.append(_Requirement(part, "exists"))
        else:
            kind = "label" if labels else "field"
            raise _StatusError(
                400, "BadRequest", f"unable to parse requirement: invalid {kind} selector: {part!r}"
            )
    return reqs


@dataclass
class _Filter:
    resource: _Resource
    namespace: str | None
    fields: list[_Requirement]
    labels: list[_Requirement]

    def matches(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        for req in self.fields:
            label = req.key
            if self.resource.group_version == "events.k8s.io/v1":
                label = _EVENTS_V1_ALIASES.get(label, label)
            if label == "metadata.name":
                actual = str(meta.get("name", ""))
            elif label == "metadata.namespace":
                actual = str(meta.get("namespace", ""))
            else:
                actual = _field_value(obj, label)
            if not req.matches(actual):
                return False
        obj_labels = meta.get("labels") or {}
        return all(req.matches(obj_labels.get(req.key)) for req in self.labels)


@dataclass(eq=False)
class _Watch:
    filter: _Filter
    request: web.Request
    bookmarks: bool
    lines: collections.deque[bytes] = field(default_factory=collections.deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    stalled_until: float = 0.0
    dropped: bool = False
    close_after_flush: bool = False

    def push(self, line: bytes) -> None:
        self.lines.append(line)
        self.wakeup.set()


@dataclass
class _Injected:
    status: int
    remaining: int
    retry_after: int | None
    watch: bool | None


class FakeApiServer:
    """``async with FakeApiServer(...) as server:`` then point a client at ``server.url``."""

    def __init__(
        self,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        bookmark_interval_seconds: float = 1.0,
        history_limit: int = 1000,
        gone_as_http_status: bool = False,
        user: str = "system:serviceaccount:oomstream:oomstream",
    ) -> None:
        self._token = token
        self._ssl_context = ssl_context
        self._bookmark_interval = bookmark_interval_seconds
        self._history_limit = history_limit
        self._gone_as_http_status = gone_as_http_status
        self._user = user
        self._rv = 1  # a fresh cluster is never at 0
        self._forgotten_rv = 0  # changes with rv <= this are no longer in history
        self._objects: dict[_Resource, dict[ObjKey, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._history: collections.deque[_Change] = collections.deque()
        self._watches: set[_Watch] = set()
        self._forbidden: set[tuple[str, str]] = set()
        self._injected: list[_Injected] = []
        self._runner: web.AppRunner | None = None
        self.requests: list[RequestRecord] = []
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeApiServer:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        app.router.add_route("POST", "/{tail:.*}", self._handle_write)
        app.router.add_route("PATCH", "/{tail:.*}", self._handle_write)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        scheme = "https" if self._ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ state changes

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return str(self._rv)

    def upsert(self, obj: dict[str, Any]) -> str:
        resource = self._resource_of(obj)
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        meta.setdefault("uid", str(uuid.uuid4()))
        key = self._key(resource, new)
        prev = self._objects[resource].get(key)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[resource][key] = new
        self._record(_Change(self._rv, resource, key, "MODIFIED" if prev else "ADDED", new, prev))
        return str(self._rv)

    def delete(self, obj_or_key: dict[str, Any] | tuple[str, str, str, str] | tuple[str, str, str]) -> str:
        """Delete an object; ``obj_or_key`` is the object (kind/apiVersion/metadata) or
        ``(apiVersion, kind, namespace, name)`` / ``(apiVersion, kind, name)`` for cluster-scoped kinds."""
        if isinstance(obj_or_key, dict):
            resource = self._resource_of(obj_or_key)
            meta = obj_or_key.get("metadata") or {}
            key = (meta.get("namespace", "default") if resource.namespaced else "", meta["name"])
        else:
            if len(obj_or_key) == 4:
                api_version, kind, ns, name = obj_or_key
            else:
                api_version, kind, name = obj_or_key
                ns = ""
            resource = _BY_KIND[(api_version, kind)]
            key = (ns, name)
        prev = self._objects[resource].pop(key, None)
        if prev is None:
            raise KeyError(f"{resource.plural} {key} not found")
        self._rv += 1
        final = copy.deepcopy(prev)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._record(_Change(self._rv, resource, key, "DELETED", final, prev))
        return str(self._rv)

    def compact(self) -> None:
        """Forget all history: a watch or an Exact list from any older resourceVersion gets 410."""
        self._history.clear()
        self._forgotten_rv = self._rv

    def drop_connections(self) -> None:
        """Abruptly close every open watch stream (no final chunk: the client sees a broken body)."""
        for w in list(self._watches):
            w.dropped = True
            transport = w.request.transport
            if transport is not None:
                transport.abort()
            w.wakeup.set()

    def stall_watches(self, seconds: float) -> None:
        """The watches open now send nothing (no events, no bookmarks) for ``seconds``; changes made
        meanwhile are delivered afterwards. Watches opened later are not affected."""
        until = asyncio.get_running_loop().time() + seconds
        for w in self._watches:
            w.stalled_until = until
            w.wakeup.set()

    def rotate_token(self, new_token: str) -> None:
        self._token = new_token

    def forbid(self, verb: str, plural: str) -> None:
        """RBAC: deny ``verb`` (get/list/watch/create/patch) on resource ``plural`` from now on."""
        self._forbidden.add((verb, plural))

    def allow(self, verb: str, plural: str) -> None:
        self._forbidden.discard((verb, plural))

    def inject_errors(
        self, status: int, count: int = 1, *, retry_after: int | None = None, watch: bool | None = None
    ) -> None:
        """The next ``count`` requests (only watches / only non-watches if ``watch`` is given) fail with
        ``status`` and a Status body; ``retry_after`` adds a Retry-After header."""
        self._injected.append(_Injected(status, count, retry_after, watch))

    def send_raw_line(self, line: bytes) -> None:
        """Write an arbitrary line (e.g. not JSON) into every open watch stream."""
        for w in self._watches:
            w.push(line.rstrip(b"\n") + b"\n")

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def count_requests(
        self, *, watch: bool | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        return sum(
            1
            for r in self.requests
            if (watch is None or r.watch == watch)
            and (path is None or r.path == path)
            and (status is None or r.status == status)
        )

    # ------------------------------------------------------------------ internals: storage

    @staticmethod
    def _resource_of(obj: dict[str, Any]) -> _Resource:
        try:
            return _BY_KIND[(obj["apiVersion"], obj["kind"])]
        except KeyError:
            raise ValueError(f"unsupported object {obj.get('apiVersion')}/{obj.get('kind')}") from None

    @staticmethod
    def _key(resource: _Resource, obj: dict[str, Any]) -> ObjKey:
        meta = obj["metadata"]
        return (meta.get("namespace", "") if resource.namespaced else "", meta["name"])

    def _record(self, change: _Change) -> None:
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._forgotten_rv = self._history.popleft().rv
        for w in self._watches:
            if w.filter.resource is change.resource and not w.close_after_flush:
                ev = self._convert(w.filter, change)
                if ev is not None:
                    w.push(ev)

    @staticmethod
    def _convert(flt: _Filter, change: _Change) -> bytes | None:
        """Watch-cache semantics for one change seen through a filtered watch."""
        cur_passes = change.type != "DELETED" and flt.matches(change.obj)
        old_passes = change.prev is not None and flt.matches(change.prev)
        if cur_passes and not old_passes:
            return _dumps({"type": "ADDED", "object": change.obj})
        if cur_passes and old_passes:
            return _dumps({"type": "MODIFIED", "object": change.obj})
        if old_passes:
            assert change.prev is not None
            old = copy.deepcopy(change.prev)
            old["metadata"]["resourceVersion"] = str(change.rv)
            return _dumps({"type": "DELETED", "object": old})
        return None

    def _state_at(self, resource: _Resource, rv: int) -> dict[ObjKey, dict[str, Any]]:
        """The objects of ``resource`` as they were at revision ``rv`` (rv >= forgotten)."""
        state = dict(self._objects[resource])
        for change in reversed(self._history):
            if change.rv <= rv:
                break
            if change.resource is not resource:
                continue
            if change.prev is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.prev
        return state

    def _bookmark(self, resource: _Resource, rv: int, *, initial_events_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_events_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj: dict[str, Any] = {"kind": resource.kind, "apiVersion": resource.group_version, "metadata": meta}
        # The zero values Go's encoder writes for an otherwise empty object.
        if resource.kind == "Pod":
            obj |= {"spec": {"containers": None}, "status": {}}
        elif resource.group_version == "v1" and resource.kind == "Event":
            obj |= {
                "involvedObject": {},
                "reason": "",
                "message": "",
                "source": {},
                "firstTimestamp": None,
                "lastTimestamp": None,
                "type": "",
                "eventTime": None,
                "reportingComponent": "",
                "reportingInstance": "",
            }
        elif resource.kind == "Event":
            obj |= {"eventTime": None, "reportingController": "", "reportingInstance": ""}
        elif resource.kind == "Node":
            obj |= {
                "spec": {},
                "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}, "nodeInfo": {}},
            }
        return _dumps({"type": "BOOKMARK", "object": obj})

    # ------------------------------------------------------------------ internals: HTTP

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        query = dict(request.query)
        is_watch = query.get("watch", "") in ("1", "true", "True")
        record = RequestRecord(request.method, request.path, query, is_watch, 0)
        self.requests.append(record)
        request[_RECORD] = record
        try:
            self._authenticate(request)
            injected = self._take_injected(is_watch)
            if injected is not None:
                record.status = injected.status
                return self._injected_response(injected)
            response: web.StreamResponse = await handler(request)
            if record.status == 0:
                record.status = response.status
            return response
        except _StatusError as e:
            record.status = e.code
            return web.Response(status=e.code, body=_dumps(e.body), content_type="application/json")

    def _authenticate(self, request: web.Request) -> None:
        if self._token is None:
            return
        if request.headers.get("Authorization", "") != f"Bearer {self._token}":
            raise _StatusError(401, "Unauthorized", "Unauthorized")

    def _take_injected(self, is_watch: bool) -> _Injected | None:
        for inj in self._injected:
            if inj.remaining > 0 and (inj.watch is None or inj.watch == is_watch):
                inj.remaining -= 1
                return inj
        return None

    @staticmethod
    def _injected_response(inj: _Injected) -> web.Response:
        reason, message = {
            429: ("TooManyRequests", "Too many requests, please try again later."),
            500: ("InternalError", "Internal error occurred: injected"),
            502: ("InternalError", "Bad Gateway"),
            503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
            504: ("Timeout", "The server was unable to return a response in the time allotted"),
            410: ("Expired", "too old resource version: 1 (2)"),
        }.get(inj.status, ("InternalError", f"injected {inj.status}"))
        details = {"retryAfterSeconds": inj.retry_after} if inj.retry_after is not None else None
        headers = {"Retry-After": str(inj.retry_after)} if inj.retry_after is not None else None
        return web.Response(
            status=inj.status,
            body=_dumps(status_body(inj.status, reason, message, details)),
            content_type="application/json",
            headers=headers,
        )

    def _authorize(self, verb: str, resource: _Resource, namespace: str | None) -> None:
        if (verb, resource.plural) not in self._forbidden:
            return
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        message = (
            f'{resource.plural} is forbidden: User "{self._user}" cannot {verb} resource "{resource.plural}" '
            f'in API group "{resource.group}" {scope}'
        )
        details: dict[str, Any] = {"kind": resource.plural}
        if resource.group:
            details["group"] = resource.group
        raise _StatusError(403, "Forbidden", message, details)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        m = _PATH_RE.match(request.path)
        resource = None
        if m is not None:
            gv = m["core"] or f"{m['group']}/{m['version']}"
            resource = _BY_PATH.get((gv, m["plural"]))
        if m is None or resource is None or (m["ns"] is not None and not resource.namespaced):
            raise _StatusError(404, "NotFound", "the server could not find the requested resource")
        namespace, name = m["ns"], m["name"]
        query = request.query
        is_watch = query.get("watch", "") in ("1", "true", "True")
        if name is not None:
            if is_watch:
                raise _StatusError(
                    400, "BadRequest", "watch of a single object: use fieldSelector=metadata.name"
                )
            self._authorize("get", resource, namespace)
            return self._get(resource, namespace, name)
        flt = _Filter(
            resource,
            namespace,
            self._check_fields(resource, _parse_selector(query.get("fieldSelector", ""), labels=False)),
            _parse_selector(query.get("labelSelector", ""), labels=True),
        )
        if is_watch:
            self._authorize("watch", resource, namespace)
            return await self._watch(request, flt)
        self._authorize("list", resource, namespace)
        return self._list(flt, query)

    # ------------------------------------------------------------------ internals: writes (Events)

    async def _handle_write(self, request: web.Request) -> web.Response:
        """``create`` (POST to the collection) and ``patch`` (PATCH an object) of Events, the way
        kube-apiserver answers them: 201 + the stored object, 409 AlreadyExists, 404 NotFound,
        415 for a patch type it does not take, 422 Invalid for an Event missing what
        ValidateEventCreate requires, 403 when RBAC denies the verb (see :meth:`forbid`)."""
        m = _PATH_RE.match(request.path)
        resource = None
        if m is not None:
            gv = m["core"] or f"{m['group']}/{m['version']}"
            resource = _BY_PATH.get((gv, m["plural"]))
        if m is None or resource is None or resource.kind != "Event" or m["ns"] is None:
            raise _StatusError(
                405, "MethodNotAllowed", "the fake server takes writes of namespaced Events only"
            )
        namespace, name = m["ns"], m["name"]
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _StatusError(
                400, "BadRequest", f"the body of the request was in an unknown format: {e}"
            ) from None
        if not isinstance(body, dict):
            raise _StatusError(400, "BadRequest", "the body must be a JSON object")
        if request.method == "POST":
            if name is not None:
                raise _StatusError(
                    405, "MethodNotAllowed", "POST to an object: create posts to the collection"
                )
            self._authorize("create", resource, namespace)
            return self._create(resource, namespace, body)
        if name is None:
            raise _StatusError(405, "MethodNotAllowed", "PATCH needs an object name")
        self._authorize("patch", resource, namespace)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in (
            "application/strategic-merge-patch+json",
            "application/merge-patch+json",
        ):
            raise _StatusError(
                415,
                "UnsupportedMediaType",
                f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got "{content_type}")',
            )
        return self._patch(resource, namespace, name, body)

    def _create(self, resource: _Resource, namespace: str, body: dict[str, Any]) -> web.Response:
        meta = body.get("metadata") or {}
        if meta.get("namespace", namespace) != namespace:
            raise _StatusError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        causes = []
        if not name:
            causes.append({"field": "metadata.name", "message": "name or generateName is required"})
        if resource.group_version == "v1":
            involved = body.get("involvedObject") or {}
            if involved.get("namespace") not in (None, "", namespace):
                causes.append(
                    {"field": "involvedObject.namespace", "message": "does not match event.namespace"}
                )
            for required in ("reason", "type"):
                if not body.get(required):
                    causes.append({"field": required, "message": "Required value"})
            if body.get("type") not in (None, "Normal", "Warning"):
                causes.append({"field": "type", "message": 'supported values: "Normal", "Warning"'})
            if body.get("eventTime") and not body.get("reportingComponent"):
                causes.append({"field": "reportingComponent", "message": "Required value"})
        if causes:
            raise _StatusError(
                422,
                "Invalid",
                f'Event.core "{name}" is invalid: '
                + ", ".join(f"{c['field']}: {c['message']}" for c in causes),
                {"name": name, "kind": "Event", "causes": causes},
            )
        if (namespace, name) in self._objects[resource]:
            raise _StatusError(
                409, "AlreadyExists", f'events "{name}" already exists', {"name": name, "kind": "events"}
            )
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", resource.group_version)
        obj.setdefault("kind", resource.kind)
        obj["metadata"] = {**meta, "name": name, "namespace": namespace}
        obj["metadata"]["creationTimestamp"] = _now_rfc3339()
        obj["metadata"].pop("resourceVersion", None)
        self.upsert(obj)
        return web.Response(
            status=201,
            body=_dumps(self._objects[resource][(namespace, name)]),
            content_type="application/json",
        )

    def _patch(self, resource: _Resource, namespace: str, name: str, body: dict[str, Any]) -> web.Response:
        current = self._objects[resource].get((namespace, name))
        if current is None:
            raise _StatusError(
                404, "NotFound", f'events "{name}" not found', {"name": name, "kind": "events"}
            )
        merged = _merge_patch(copy.deepcopy(current), body)
        merged["metadata"]["name"] = name
        merged["metadata"]["namespace"] = namespace
        merged["metadata"]["uid"] = current["metadata"]["uid"]
        self.upsert(merged)
        return web.Response(
            body=_dumps(self._objects[resource][(namespace, name)]), content_type="application/json"
        )

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of a kind (test inspection), in creation order."""
        resource = _BY_KIND[(api_version, kind)]
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in self._objects[resource].items()
            if namespace is None or ns == namespace
        ]

    @staticmethod
    def _check_fields(resource: _Resource, reqs: list[_Requirement]) -> list[_Requirement]:
        allowed = {"metadata.name", "metadata.namespace", *resource.fields}
        if resource.group_version == "events.k8s.io/v1":
            allowed |= set(_EVENTS_V1_ALIASES)
        for req in reqs:
            if req.key not in allowed:
                raise _StatusError(400, "BadRequest", f"field label not supported: {req.key}")
        return reqs

    def _get(self, resource: _Resource, namespace: str | None, name: str) -> web.Response:
        if resource.namespaced and namespace is None:
            raise _StatusError(404, "NotFound", "the server could not find the requested resource")
        obj = self._objects[resource].get((namespace or "", name))
        if obj is None:
            raise _StatusError(
                404,
                "NotFound",
                f'{resource.plural} "{name}" not found',
                {"name": name, "kind": resource.plural},
            )
        return web.Response(body=_dumps(obj), content_type="application/json")

    def _too_old(self, rv: int) -> _StatusError:
        return _StatusError(410, "Expired", f"too old resource version: {rv} ({self._forgotten_rv + 1})")

    @staticmethod
    def _parse_rv(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _StatusError(400, "BadRequest", f'resourceVersion: Invalid value: "{text}"') from None
        if value < 0:
            raise _StatusError(400, "BadRequest", f'resourceVersion: Invalid value: "{text}"')
        return value

    def _list(self, flt: _Filter, query: Any) -> web.Response:
        rv_text = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        cont = query.get("continue", "")
        limit_text = query.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() and int(limit_text) > 0 else 0
        start_after: ObjKey | None = None
        if match and not rv_text:
            raise _StatusError(
                422,
                "Invalid",
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                "resourceVersion is provided",
            )
        if match not in ("", "Exact", "NotOlderThan"):
            raise _StatusError(422, "Invalid", f'resourceVersionMatch: Unsupported value: "{match}"')
        if cont:
            if rv_text not in ("", "0"):
                raise _StatusError(
                    400, "BadRequest", "specifying resource version is not allowed when using continue"
                )
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                snapshot_rv = int(token["rv"])
                ns, _, name = str(token["start"]).partition("/")
                start_after = (ns, name.rstrip("\x00"))
            except (ValueError, KeyError, TypeError):
                raise _StatusError(400, "BadRequest", "continue key is not valid: malformed token") from None
            if snapshot_rv < self._forgotten_rv:
                raise _StatusError(410, "Expired", _CONTINUE_EXPIRED)
            state = self._state_at(flt.resource, snapshot_rv)
        elif rv_text in ("", "0"):
            snapshot_rv = self._rv
            state = self._objects[flt.resource]
        else:
            wanted = self._parse_rv(rv_text)
            if wanted > self._rv:
                raise _StatusError(
                    504,
                    "Timeout",
                    f"Too large resource version: {wanted}, current: {self._rv}",
                    {
                        "causes": [
                            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
            if match == "Exact":
                if wanted < self._forgotten_rv:
                    raise self._too_old(wanted)
                snapshot_rv = wanted
                state = self._state_at(flt.resource, wanted)
            else:
                snapshot_rv = self._rv
                state = self._objects[flt.resource]
        keys = sorted(k for k, obj in state.items() if flt.matches(obj))
        if start_after is not None:
            keys = [k for k in keys if k > start_after]
        metadata: dict[str, Any] = {"resourceVersion": str(snapshot_rv)}
        page = keys
        if limit and len(keys) > limit:
            page = keys[:limit]
            last = page[-1]
            token = {"v": "meta.k8s.io/v1", "rv": snapshot_rv, "start": f"{last[0]}/{last[1]}\x00"}
            metadata["continue"] = base64.urlsafe_b64encode(_dumps(token)).decode()
            if not flt.fields and not flt.labels:
                metadata["remainingItemCount"] = len(keys) - limit
        items = []
        for k in page:
            item = dict(state[k])
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        body = {
            "kind": flt.resource.list_kind,
            "apiVersion": flt.resource.group_version,
            "metadata": metadata,
            "items": items,
        }
        return web.Response(body=_dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, flt: _Filter) -> web.StreamResponse:
        query = request.query
        rv_text = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks", "") in ("1", "true", "True")
        send_initial = query.get("sendInitialEvents", "") in ("1", "true", "True")
        timeout_text = query.get("timeoutSeconds", "")
        timeout = float(timeout_text) if timeout_text.isdigit() and int(timeout_text) > 0 else None
        if send_initial and (query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            raise _StatusError(
                422,
                "Invalid",
                "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless "
                "allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
            )
        w = _Watch(flt, request, bookmarks)
        # Everything below up to registration is synchronous: no change can slip in between.
        if send_initial or rv_text in ("", "0"):
            for key in sorted(self._objects[flt.resource]):
                obj = self._objects[flt.resource][key]
                if flt.matches(obj):
                    w.push(_dumps({"type": "ADDED", "object": obj}))
            if send_initial:
                w.push(self._bookmark(flt.resource, self._rv, initial_events_end=True))
        else:
            since = self._parse_rv(rv_text)
            if since < self._forgotten_rv:
                err = self._too_old(since)
                if self._gone_as_http_status:
                    raise err
                w.push(_dumps({"type": "ERROR", "object": err.body}))
                w.close_after_flush = True
            else:
                for change in self._history:
                    if change.rv > since and change.resource is flt.resource:
                        ev = self._convert(flt, change)
                        if ev is not None:
                            w.push(ev)
        self._watches.add(w)
        loop = asyncio.get_running_loop()
        try:
            resp = web.StreamResponse(
                status=200,
                headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
            )
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            request[_RECORD].status = 200
            deadline = loop.time() + timeout if timeout is not None else None
            next_bookmark = loop.time() + self._bookmark_interval if bookmarks else None
            while not w.dropped:
                now = loop.time()
                if now < w.stalled_until:
                    w.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(w.wakeup.wait(), w.stalled_until - now)
                    if next_bookmark is not None:
                        next_bookmark = max(next_bookmark, loop.time() + self._bookmark_interval)
                    continue
                if w.lines:
                    line = w.lines.popleft()
                    await resp.write(line if line.endswith(b"\n") else line + b"\n")
                    continue
                if w.close_after_flush:
                    break
                if deadline is not None and now >= deadline:
                    break
                if next_bookmark is not None and now >= next_bookmark:
                    w.push(self._bookmark(flt.resource, self._rv))
                    next_bookmark = now + self._bookmark_interval
                    continue
                wake_at = min(t for t in (deadline, next_bookmark, now + 3600.0) if t is not None)
                w.wakeup.clear()
                if w.lines or w.dropped:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(w.wakeup.wait(), max(0.0, wake_at - now))
            if not w.dropped:
                await resp.write_eof()
            return resp
        except (ConnectionError, RuntimeError):
            # The transport was aborted under us (drop_connections) or the client went away.
            return web.Response(status=200)
        finally:
            self._watches.discard(w)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def make_tls_files(directory: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    d = Path(directory)
    ext = d / "server-ext.cnf"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=fake-kubernetes-ca", "-keyout", "ca.key", "-out",
        "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-subj", "/CN=kube-apiserver", "-keyout", "server.key", "-out", "server.csr")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "server.crt", "-extfile", str(ext))  # fmt: skip
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key")
