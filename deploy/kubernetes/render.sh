#!/usr/bin/env bash
# render.sh [k8s-events] - print a plain manifest rendered from the Helm chart deploy/helm/oomstream
# for namespace "oomstream":
#   (no argument)  oomstream.yaml: the default values, with the Namespace object;
#   k8s-events     oomstream-k8s-events.yaml: the Event sink's RBAC alone (eventSink.enabled=true).
# `make manifests` writes both; a test checks the committed files are up to date. HELM names the
# helm binary (default: helm on PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HELM=${HELM:-helm}
CHART=$ROOT/deploy/helm/oomstream
case "${1:-}" in
"")
    cat <<'HEAD'
# oomstream as a DaemonSet: one pod per node reading the node's kernel log, watching its own
# node's pods and Events, publishing to Kafka. Apply with: kubectl apply -f oomstream.yaml
# (set sinks.kafka.bootstrap_servers in the ConfigMap first).
#
# GENERATED from the Helm chart deploy/helm/oomstream by `make manifests`: edit the chart, not this.
HEAD
    "$HELM" template oomstream "$CHART" --namespace oomstream --set namespace.create=true
    ;;
k8s-events)
    cat <<'HEAD'
# Optional: what the Kubernetes Event sink needs (an Event on the pod for each OOM kill). Apply it
# together with oomstream.yaml once the ConfigMap enables the sink
# ([sinks] enabled = ["kafka", "k8s_events"]):
#   kubectl apply -f oomstream.yaml -f oomstream-k8s-events.yaml
#
# GENERATED from the Helm chart deploy/helm/oomstream by `make manifests`: edit the chart, not this.
HEAD
    "$HELM" template oomstream "$CHART" --namespace oomstream --set eventSink.enabled=true \
        --show-only templates/rbac-k8s-events.yaml
    ;;
*)
    echo "usage: $0 [k8s-events]" >&2
    exit 2
    ;;
esac
