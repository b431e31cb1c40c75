"""Connection to the Kubernetes API server, built on kubernetes_asyncio.

kubernetes_asyncio does what is easy to get subtly wrong by hand: the in-cluster loader
(``KUBERNETES_SERVICE_HOST``/``PORT``, the service-account token and CA files, periodic token
re-reads), the kubeconfig loader (contexts, token / tokenFile / client certificates / exec plugins,
``certificate-authority``, ``insecure-skip-tls-verify``, ``tls-server-name``, proxies), the TLS
context and the ``Authorization`` header. We only use its ``ApiClient`` for the HTTP request and take
the raw body (``_preload_content=False``): objects stay plain dicts parsed with orjson, which is faster
than model deserialization and keeps every field, including ones the generated models do not know.

Errors come out as :class:`KubeApiError`, classified for a list/watch loop: 401 re-reads the
credentials once and retries (a rotated service-account token), 403 is fatal with a message naming
the missing RBAC rule, 410 is "Gone" (relist), 429/5xx/connection trouble is retriable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient, Configuration

from parsers.telemetry import Count, Tally, Telemetry

# What KubeApi counts, in its own tally or in the ``stats`` of the caller (a list-watch).
KUBE_API_TELEMETRY = Telemetry(
    "kube_api",
    (
        Count("auth_refreshes", "credentials re-read after a 401"),
        Count("errors_transport", "requests that failed below HTTP"),
        Count("errors_http_{}", "responses with an error status, by status"),
    ),
)

__all__ = ["KubeApi", "KubeApiConfig", "KubeApiError"]

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024
_MAX_LINE = 64 * 1024 * 1024  # one watch event; the API server's own request limit is ~3 MiB
_USER_AGENT = "oomstream/0.1 (kubernetes_asyncio)"

_PATH_RE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


@dataclass(frozen=True, slots=True)
class KubeApiConfig:
    mode: Literal["auto", "in_cluster", "kubeconfig"] = "auto"
    """auto: in-cluster if ``KUBERNETES_SERVICE_HOST`` is set, else kubeconfig."""
    kubeconfig_path: str | None = None
    """Default: ``$KUBECONFIG`` (may list several files, ``:``-separated) or ``~/.kube/config``."""
    context: str | None = None
    token_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    request_timeout_seconds: float = 30.0


class KubeApiError(Exception):
    """A failed API call. ``status`` is the HTTP status (None for connection trouble), ``reason`` the
    Status reason (``Forbidden``, ``Expired``, ``TooManyRequests``...) or our own (``ConnectionError``,
    ``Timeout``, ``Stalled``, ``TLSError``, ``ConfigError``, ``InvalidResponse``)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        retriable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retriable = retriable
        self.retry_after = retry_after

    @property
    def gone(self) -> bool:
        """410: the requested resourceVersion (or continue token) is no longer available: relist."""
        return self.status == 410

    def __repr__(self) -> str:
        return f"KubeApiError({str(self)!r}, status={self.status}, reason={self.reason!r})"


def describe_request(path: str, params: Mapping[str, str]) -> tuple[str, str, str, str | None]:
    """(verb, resource, apiGroup, namespace) of a GET on ``path``, for RBAC messages."""
    m = _PATH_RE.match(path)
    if m is None:
        return ("get", path, "", None)
    watch = params.get("watch", "") in ("1", "true", "True")
    verb = "watch" if watch else ("get" if m["name"] else "list")
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    return (verb, resource, m["group"] or "", m["ns"])


def _status_of(body: bytes) -> tuple[str | None, str]:
    """(reason, message) of a ``Status`` body, or (None, a snippet of the body)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict) and data.get("kind") == "Status":
        return data.get("reason") or None, str(data.get("message", ""))
    return None, body[:200].decode("utf-8", "replace").strip()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _http_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    path: str,
    params: Mapping[str, str],
    *,
    method: str = "GET",
) -> KubeApiError:
    reason, message = _status_of(body)
    where = f"{method} {path}"
    if status == 403:
        verb, resource, group, ns = describe_request(path, params)
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, verb)
        scope = f' in namespace "{ns}"' if ns else " cluster-wide"
        return KubeApiError(
            f"forbidden: RBAC does not allow verb {verb!r} on resource {resource!r} "
            f"(apiGroup {group!r}){scope}; grant it in the ClusterRole of this service account. "
            f"Server said: {message}",
            status=status,
            reason=reason or "Forbidden",
        )
    if status == 401:
        return KubeApiError(
            f"unauthorized ({where}): the API server rejected our credentials even after re-reading them: "
            f"{message}",
            status=status,
            reason=reason or "Unauthorized",
        )
    if status == 410:
        return KubeApiError(f"gone ({where}): {message}", status=status, reason=reason or "Expired")
    retriable = status == 429 or status >= 500
    return KubeApiError(
        f"HTTP {status} ({where}): {message}",
        status=status,
        reason=reason,
        retriable=retriable,
        retry_after=_retry_after(headers) if retriable else None,
    )


def _transport_error(exc: BaseException, path: str, method: str = "GET") -> KubeApiError:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return KubeApiError(
            f"TLS failure talking to the API server ({method} {path}): {exc}", reason="TLSError"
        )
    if isinstance(exc, TimeoutError):
        return KubeApiError(f"timeout ({method} {path})", reason="Timeout", retriable=True)
    return KubeApiError(
        f"connection error ({method} {path}): {type(exc).__name__}: {exc}",
        reason="ConnectionError",
        retriable=True,
    )


class KubeApi:
    """``async with KubeApi(config) as api:`` — one HTTP session (connection pool) for all callers."""

    def __init__(self, config: KubeApiConfig | None = None) -> None:
        self.config = config or KubeApiConfig()
        self.mode: Literal["in_cluster", "kubeconfig"] = self._resolve_mode()
        self._configuration: Configuration | None = None
        self._client: ApiClient | None = None
        self._refresh_lock = asyncio.Lock()
        self._credentials_generation = 0
        self.counts: Tally = KUBE_API_TELEMETRY.tally()

    # ------------------------------------------------------------------ lifecycle

    def _resolve_mode(self) -> Literal["in_cluster", "kubeconfig"]:
        if self.config.mode == "auto":
            return "in_cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "kubeconfig"
        return self.config.mode

    @property
    def kubeconfig_path(self) -> str:
        return (
            self.config.kubeconfig_path
            or os.environ.get("KUBECONFIG")
            or os.path.expanduser("~/.kube/config")
        )

    async def _load_credentials(self, configuration: Configuration) -> None:
        try:
            if self.mode == "in_cluster":
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration,
                    try_refresh_token=True,
                    token_filename=self.config.token_path,
                    cert_filename=self.config.ca_path,
                )
            else:
                await k8s_config.load_kube_config(
                    config_file=self.kubeconfig_path,
                    context=self.config.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as e:
            source = "in-cluster service account" if self.mode == "in_cluster" else self.kubeconfig_path
            raise KubeApiError(
                f"cannot load Kubernetes credentials ({self.mode}, {source}): {type(e).__name__}: {e}",
                reason="ConfigError",
            ) from e

    async def __aenter__(self) -> KubeApi:
        configuration = Configuration()
        await self._load_credentials(configuration)
        self._configuration = configuration
        self._client = ApiClient(configuration)
        self._client.user_agent = _USER_AGENT
        log.info("kubernetes api: %s mode, server %s", self.mode, configuration.host)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @property
    def host(self) -> str:
        return str(self._configuration.host) if self._configuration is not None else ""

    # ------------------------------------------------------------------ credentials

    async def refresh_credentials(self) -> None:
        """Re-read the credentials now (a rotated service-account token, a new kubeconfig token)."""
        await self._refresh(self._credentials_generation)

    async def _refresh(self, seen_generation: int) -> None:
        async with self._refresh_lock:
            if seen_generation != self._credentials_generation:
                return  # another caller refreshed since our request was sent
            if self._configuration is None:
                raise KubeApiError("KubeApi is not open", reason="ConfigError")
            await self._load_credentials(self._configuration)
            self._credentials_generation += 1
            self.counts["auth_refreshes"] += 1
            log.info("kubernetes api: credentials re-read (%s)", self.mode)

    # ------------------------------------------------------------------ requests

    async def _send(
        self,
        path: str,
        params: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        *,
        method: str = "GET",
        body: Any = None,
        content_type: str | None = None,
    ) -> aiohttp.ClientResponse:
        if self._client is None:
            raise KubeApiError("KubeApi is not open (use async with)", reason="ConfigError")
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            resp = await self._client.call_api(
                path,
                method,
                query_params=list(params.items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.counts["errors_transport"] += 1
            raise _transport_error(e, path, method) from e
        assert isinstance(resp, aiohttp.ClientResponse)
        return resp

    async def _open(
        self,
        path: str,
        params: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        *,
        stats: Counter[str] | None,
        method: str = "GET",
        body: Any = None,
        content_type: str | None = None,
    ) -> aiohttp.ClientResponse:
        """A 2xx response with the body unread; 401 re-reads credentials once and retries."""
        for attempt in (1, 2):
            generation = self._credentials_generation
            resp = await self._send(
                path, params, timeout, method=method, body=body, content_type=content_type
            )
            if 200 <= resp.status < 300:
                return resp
            try:
                error_body = await resp.content.read(_MAX_ERROR_BODY)
            except (aiohttp.ClientError, TimeoutError) as e:
                error_body = b""
                log.debug("kubernetes api: reading error body failed: %s", e)
            finally:
                resp.release()
            if resp.status == 401 and attempt == 1:
                log.warning("kubernetes api: 401 on %s %s, re-reading credentials", method, path)
                await self._refresh(generation)
                if stats is not None:
                    stats["auth_refreshes"] += 1
                continue
            self.counts[f"errors_http_{resp.status}"] += 1
            raise _http_error(resp.status, error_body, resp.headers, path, params, method=method)
        raise AssertionError("unreachable")

    async def write_json(
        self, method: str, path: str, body: Mapping[str, Any], *, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """POST (create) or PATCH ``body`` at ``path``; returns the object the server stored."""
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_seconds)
        resp = await self._open(
            path, {}, timeout, stats=None, method=method, body=dict(body), content_type=content_type
        )
        try:
            raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _transport_error(e, path, method) from e
        finally:
            resp.release()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise KubeApiError(f"invalid JSON from {method} {path}: {e}", reason="InvalidResponse") from e
        return data if isinstance(data, dict) else {}

    async def get_json(
        self, path: str, params: Mapping[str, str], *, stats: Counter[str] | None = None
    ) -> dict[str, Any]:
        """GET ``path`` and return the JSON object of the body (a list, an object, a Status)."""
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_seconds)
        resp = await self._open(path, params, timeout, stats=stats)
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _transport_error(e, path) from e
        finally:
            resp.release()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise KubeApiError(
                f"invalid JSON from GET {path}: {e}", reason="InvalidResponse", retriable=True
            ) from e
        if not isinstance(data, dict):
            raise KubeApiError(
                f"GET {path}: expected a JSON object", reason="InvalidResponse", retriable=True
            )
        return data

    async def stream_lines(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        read_timeout_seconds: float,
        stats: Counter[str] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The raw, non-empty lines of a streaming GET (a watch), as they arrive.

        Ends when the server ends the stream cleanly. Raises :class:`KubeApiError`: HTTP errors before
        the stream starts (after one credential refresh for a 401), ``reason="Stalled"`` when no byte
        arrived for ``read_timeout_seconds`` (a healthy watch gets bookmarks), ``ConnectionError`` when
        the connection breaks mid-stream. Closing the generator early closes the connection.
        """
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.config.request_timeout_seconds,
            sock_connect=self.config.request_timeout_seconds,
        )
        try:
            async with asyncio.timeout(self.config.request_timeout_seconds):
                resp = await self._open(path, params, timeout, stats=stats)
        except TimeoutError as e:
            raise _transport_error(e, path) from e
        clean = False
        try:
            buf = bytearray()
            while True:
                try:
                    async with asyncio.timeout(read_timeout_seconds):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    raise KubeApiError(
                        f"stream stalled: no data for {read_timeout_seconds:g}s (GET {path})",
                        reason="Stalled",
                        retriable=True,
                    ) from None
                except (aiohttp.ClientError, OSError) as e:
                    raise _transport_error(e, path) from e
                if not chunk:
                    clean = True
                    if buf.strip():
                        yield bytes(buf)  # a last line without newline
                    return
                buf += chunk
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    line = bytes(buf[start:end])
                    start = end + 1
                    if line.strip():
                        yield line
                del buf[:start]
                if len(buf) > _MAX_LINE:
                    raise KubeApiError(
                        f"stream line longer than {_MAX_LINE} bytes (GET {path})",
                        reason="InvalidResponse",
                        retriable=True,
                    )
        finally:
            if clean:
                resp.release()
            else:
                with contextlib.suppress(Exception):
                    resp.close()
