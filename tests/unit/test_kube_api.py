"""streamer.kube.api against the fake API server over real HTTP(S) on 127.0.0.1: in-cluster loading
(env + token/CA files, TLS) with token rotation, kubeconfig loading, error classification, streaming."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from k8sfake.objects import make_pod
from k8sfake.server import FakeApiServer, TlsFiles, make_tls_files

from streamer.kube.api import KubeApi, KubeApiConfig, KubeApiError, describe_request


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def in_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeApiServer, tls: TlsFiles, token: str
) -> KubeApiConfig:
    port = server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    return KubeApiConfig(
        mode="auto", token_path=str(token_file), ca_path=str(tls.ca_cert), request_timeout_seconds=5
    )


def plain(tmp_path: Path, url: str) -> KubeApiConfig:
    """kubeconfig mode, no auth required by the server."""
    path = write_kubeconfig(tmp_path / "plain-config", url, token="unused")
    return KubeApiConfig(
        mode="kubeconfig", kubeconfig_path=str(path), context="fake", request_timeout_seconds=5
    )


def write_kubeconfig(
    path: Path,
    server: str,
    *,
    token: str | None = None,
    token_file: Path | None = None,
    ca: Path | None = None,
    context: str = "fake",
) -> Path:
    cluster: dict[str, object] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    user: dict[str, object] = {}
    if token is not None:
        user["token"] = token
    if token_file is not None:
        user["tokenFile"] = str(token_file)
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake-cluster", "cluster": cluster}],
        "users": [{"name": "fake-user", "user": user}],
        "contexts": [
            {"name": context, "context": {"cluster": "fake-cluster", "user": "fake-user"}},
            {"name": "other", "context": {"cluster": "fake-cluster", "user": "nobody"}},
        ],
        "current-context": "other",
    }
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


async def test_in_cluster_tls_list_and_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: TlsFiles
) -> None:
    async with FakeApiServer(token="tok-1", ssl_context=tls.server_context()) as server:
        server.upsert(make_pod(name="web-1"))
        server.upsert({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}, "status": {}})
        api = KubeApi(in_cluster(tmp_path, monkeypatch, server, tls, "tok-1"))
        await api.__aenter__()
        assert api.mode == "in_cluster"
        assert api.host == server.url
        pods = await api.get_json("/api/v1/pods", {"limit": "10"})
        assert pods["kind"] == "PodList"
        assert [p["metadata"]["name"] for p in pods["items"]] == ["web-1"]
        node = await api.get_json("/api/v1/nodes/node-a", {})
        assert node["kind"] == "Node" and node["metadata"]["name"] == "node-a"
        await api.close()
        assert all(r.status == 200 for r in server.requests)


async def test_in_cluster_token_rotation_recovers_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: TlsFiles
) -> None:
    async with FakeApiServer(token="tok-1", ssl_context=tls.server_context()) as server:
        cfg = in_cluster(tmp_path, monkeypatch, server, tls, "tok-1")
        async with KubeApi(cfg) as api:
            await api.get_json("/api/v1/pods", {})
            server.rotate_token("tok-2")
            Path(cfg.token_path).write_text("tok-2")  # what the kubelet does
            pods = await api.get_json("/api/v1/pods", {})
            assert pods["kind"] == "PodList"
            assert api.counts["auth_refreshes"] == 1
            assert [r.status for r in server.requests] == [200, 401, 200]
            # A stream recovers the same way.
            server.rotate_token("tok-3")
            Path(cfg.token_path).write_text("tok-3")
            server.upsert(make_pod(name="web-2"))
            lines = [
                line
                async for line in api.stream_lines(
                    "/api/v1/pods", {"watch": "1", "timeoutSeconds": "1"}, read_timeout_seconds=5
                )
            ]
            assert len(lines) == 1 and json.loads(lines[0])["type"] == "ADDED"
            assert api.counts["auth_refreshes"] == 2


async def test_token_still_rejected_after_refresh_is_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: TlsFiles
) -> None:
    async with (
        FakeApiServer(token="tok-1", ssl_context=tls.server_context()) as server,
        KubeApi(in_cluster(tmp_path, monkeypatch, server, tls, "tok-1")) as api,
    ):
        server.rotate_token("tok-2")  # token file not updated
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/pods", {})
        assert ei.value.status == 401 and not ei.value.retriable
        assert [r.status for r in server.requests] == [401, 401]  # refreshed once, retried once


async def test_tls_with_wrong_ca_is_a_clear_non_retriable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: TlsFiles
) -> None:
    (tmp_path / "other").mkdir()
    other = make_tls_files(tmp_path / "other")
    async with FakeApiServer(ssl_context=tls.server_context()) as server:
        cfg = in_cluster(tmp_path, monkeypatch, server, tls, "x")
        cfg = KubeApiConfig(token_path=cfg.token_path, ca_path=str(other.ca_cert), request_timeout_seconds=5)
        async with KubeApi(cfg) as api:
            with pytest.raises(KubeApiError) as ei:
                await api.get_json("/api/v1/pods", {})
            assert ei.value.reason == "TLSError" and not ei.value.retriable


async def test_in_cluster_missing_files_is_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")
    cfg = KubeApiConfig(
        mode="in_cluster", token_path=str(tmp_path / "none"), ca_path=str(tmp_path / "none.crt")
    )
    with pytest.raises(KubeApiError, match="cannot load Kubernetes credentials") as ei:
        async with KubeApi(cfg):
            pass
    assert ei.value.reason == "ConfigError"


async def test_kubeconfig_mode_plain_http_token_and_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    async with FakeApiServer(token="kc-token") as server:
        server.upsert(make_pod(name="web-1"))
        path = write_kubeconfig(tmp_path / "config", server.url, token="kc-token")
        monkeypatch.setenv("KUBECONFIG", str(path))
        async with KubeApi(KubeApiConfig(context="fake")) as api:  # auto -> kubeconfig, $KUBECONFIG
            assert api.mode == "kubeconfig"
            pods = await api.get_json("/api/v1/namespaces/default/pods", {})
            assert len(pods["items"]) == 1
        # The current-context's user has no token: 401, refresh, 401 -> error.
        async with KubeApi(KubeApiConfig(mode="kubeconfig", kubeconfig_path=str(path))) as api:
            with pytest.raises(KubeApiError) as ei:
                await api.get_json("/api/v1/pods", {})
            assert ei.value.status == 401


async def test_kubeconfig_https_ca_and_rotated_token_file(tmp_path: Path, tls: TlsFiles) -> None:
    async with FakeApiServer(token="a", ssl_context=tls.server_context()) as server:
        token_file = tmp_path / "token"
        token_file.write_text("a")
        path = write_kubeconfig(tmp_path / "config", server.url, token_file=token_file, ca=tls.ca_cert)
        async with KubeApi(
            KubeApiConfig(mode="kubeconfig", kubeconfig_path=str(path), context="fake")
        ) as api:
            await api.get_json("/api/v1/pods", {})
            server.rotate_token("b")
            token_file.write_text("b")
            await api.get_json("/api/v1/pods", {})
            assert api.counts["auth_refreshes"] == 1


async def test_error_classification(tmp_path: Path) -> None:
    async with FakeApiServer() as server, KubeApi(plain(tmp_path, server.url)) as api:
        server.forbid("list", "pods")
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/pods", {"fieldSelector": "spec.nodeName=node-a"})
        e = ei.value
        assert e.status == 403 and not e.retriable
        assert "'list'" in str(e) and "'pods'" in str(e) and "cluster-wide" in str(e)
        server.forbid("watch", "events")
        with pytest.raises(
            KubeApiError, match=r"verb 'watch' on resource 'events' \(apiGroup 'events.k8s.io'\)"
        ):
            async for _ in api.stream_lines(
                "/apis/events.k8s.io/v1/namespaces/kube-system/events",
                {"watch": "true"},
                read_timeout_seconds=1,
            ):
                pass

        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/nodes/nope", {})
        assert ei.value.status == 404 and ei.value.reason == "NotFound" and not ei.value.retriable

        server.inject_errors(429, retry_after=3)
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/nodes/nope", {})
        assert ei.value.status == 429 and ei.value.retriable and ei.value.retry_after == 3.0

        server.inject_errors(503)
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/nodes/nope", {})
        assert ei.value.status == 503 and ei.value.retriable

        server.allow("list", "pods")
        server.upsert(make_pod(name="x"))
        server.compact()
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/pods", {"resourceVersion": "1", "resourceVersionMatch": "Exact"})
        assert ei.value.gone and ei.value.reason == "Expired"


async def test_connection_refused_is_retriable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with KubeApi(plain(tmp_path, f"http://127.0.0.1:{port}")) as api:
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/pods", {})
        assert ei.value.status is None and ei.value.retriable and ei.value.reason == "ConnectionError"


async def test_stream_lines_stall_drop_and_clean_end(tmp_path: Path) -> None:
    async with (
        FakeApiServer(bookmark_interval_seconds=10) as server,
        KubeApi(plain(tmp_path, server.url)) as api,
    ):
        rv = server.resource_version
        # Clean end after timeoutSeconds.
        server.upsert(make_pod(name="a"))
        lines = [
            line
            async for line in api.stream_lines(
                "/api/v1/pods",
                {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "1"},
                read_timeout_seconds=5,
            )
        ]
        assert [json.loads(x)["object"]["metadata"]["name"] for x in lines] == ["a"]

        # Stall: nothing arrives for read_timeout_seconds.
        gen = api.stream_lines(
            "/api/v1/pods", {"watch": "1", "resourceVersion": rv}, read_timeout_seconds=0.3
        )
        assert json.loads(await anext(gen))["type"] == "ADDED"
        with pytest.raises(KubeApiError) as ei:
            await anext(gen)
        assert ei.value.reason == "Stalled" and ei.value.retriable

        # Abrupt drop mid-stream.
        gen = api.stream_lines("/api/v1/pods", {"watch": "1", "resourceVersion": rv}, read_timeout_seconds=5)
        assert json.loads(await anext(gen))["type"] == "ADDED"
        asyncio.get_running_loop().call_later(0.1, server.drop_connections)
        with pytest.raises(KubeApiError) as ei:
            await anext(gen)
        assert ei.value.reason == "ConnectionError" and ei.value.retriable

        # A huge object arrives in many chunks and comes out as one line.
        pod = make_pod(name="big", annotations={"x": "y" * 3_000_000})
        server.upsert(pod)
        gen = api.stream_lines(
            "/api/v1/pods", {"watch": "1", "fieldSelector": "metadata.name=big"}, read_timeout_seconds=5
        )
        big = json.loads(await anext(gen))
        assert len(big["object"]["metadata"]["annotations"]["x"]) == 3_000_000
        await gen.aclose()


def test_describe_request() -> None:
    assert describe_request("/api/v1/pods", {"watch": "1"}) == ("watch", "pods", "", None)
    assert describe_request("/api/v1/namespaces/x/events", {}) == ("list", "events", "", "x")
    assert describe_request("/api/v1/nodes/n1", {}) == ("get", "nodes", "", None)
    assert describe_request("/apis/events.k8s.io/v1/events", {"watch": "true"}) == (
        "watch",
        "events",
        "events.k8s.io",
        None,
    )


async def test_fake_server_protocol_shapes(tmp_path: Path) -> None:
    """The fake's list/watch semantics that the client relies on, checked through KubeApi."""
    async with (
        FakeApiServer(bookmark_interval_seconds=0.1) as server,
        KubeApi(plain(tmp_path, server.url)) as api,
    ):
        for name in ("p1", "p2", "p3"):
            server.upsert(make_pod(name=name))
        page1 = await api.get_json("/api/v1/pods", {"limit": "2"})
        assert page1["kind"] == "PodList" and page1["apiVersion"] == "v1"
        assert all("kind" not in i and "apiVersion" not in i for i in page1["items"])
        assert page1["metadata"]["remainingItemCount"] == 1
        snapshot_rv = page1["metadata"]["resourceVersion"]
        # Changes after the first page do not leak into the rest of the snapshot.
        p3 = make_pod(name="p3", phase="Failed")
        server.upsert(p3)
        server.upsert(make_pod(name="p4"))
        page2 = await api.get_json("/api/v1/pods", {"limit": "2", "continue": page1["metadata"]["continue"]})
        assert page2["metadata"]["resourceVersion"] == snapshot_rv
        assert [(i["metadata"]["name"], i["status"]["phase"]) for i in page2["items"]] == [("p3", "Running")]
        assert "continue" not in page2["metadata"]
        # A continue token outlives its snapshot only until compaction.
        page1 = await api.get_json("/api/v1/pods", {"limit": "1"})
        server.upsert(make_pod(name="p5"))
        server.compact()
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/pods", {"limit": "1", "continue": page1["metadata"]["continue"]})
        assert ei.value.gone

        # Filtered watch: an object that stops matching is DELETED (previous content, new RV).
        rv = server.resource_version
        server.upsert(make_pod(name="p1", phase="Failed"))
        params = {"watch": "1", "resourceVersion": rv, "fieldSelector": "status.phase=Running"}
        params |= {"allowWatchBookmarks": "true"}
        gen = api.stream_lines("/api/v1/pods", params, read_timeout_seconds=2)
        deleted = json.loads(await anext(gen))
        assert deleted["type"] == "DELETED"
        assert deleted["object"]["status"]["phase"] == "Running"
        assert deleted["object"]["metadata"]["resourceVersion"] == server.resource_version
        bookmark = json.loads(await anext(gen))
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["kind"] == "Pod" and bookmark["object"]["apiVersion"] == "v1"
        assert bookmark["object"]["metadata"]["resourceVersion"] == server.resource_version
        assert "name" not in bookmark["object"]["metadata"]
        await gen.aclose()

        # Streaming list: initial ADDED events, then a bookmark marking their end.
        params = {"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}
        params |= {"allowWatchBookmarks": "true", "resourceVersion": ""}
        gen = api.stream_lines("/api/v1/pods", params, read_timeout_seconds=2)
        events = [json.loads(await anext(gen)) for _ in range(6)]
        assert [e["type"] for e in events] == ["ADDED"] * 5 + ["BOOKMARK"]
        assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        await gen.aclose()
        with pytest.raises(KubeApiError) as ei:
            await api.get_json("/api/v1/pods", {"fieldSelector": "spec.bogus=1"})
        assert ei.value.status == 400 and "field label not supported" in str(ei.value)
