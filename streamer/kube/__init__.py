"""Kubernetes API access: connection (:mod:`.api`) and the list+watch loop (:mod:`.listwatch`)."""

from streamer.kube.api import KubeApi, KubeApiConfig, KubeApiError

__all__ = ["KubeApi", "KubeApiConfig", "KubeApiError"]
