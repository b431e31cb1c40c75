"""Client-side helpers for tests against the fake API server: a kubeconfig pointing at it, and
polling for a condition on the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from streamer.kube.api import KubeApiConfig


async def until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def write_kubeconfig(path: Path, url: str, token: str = "t") -> Path:
    """A kubeconfig with one context: the fake at ``url``, bearer ``token``."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(cfg))
    return path


def plain_config(tmp_path: Path, url: str) -> KubeApiConfig:
    path = write_kubeconfig(tmp_path / "kubeconfig", url)
    return KubeApiConfig(mode="kubeconfig", kubeconfig_path=str(path), request_timeout_seconds=5)
