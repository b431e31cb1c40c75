#!/usr/bin/env bash
# render.sh - print deploy/kubernetes/oomstream.yaml: the Helm chart's default values rendered for
# namespace "oomstream" (with the Namespace object). `make manifests` writes it; a test checks the
# committed file is up to date. HELM names the helm binary (default: helm on PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cat <<'HEAD'
# oomstream as a DaemonSet: one pod per node reading the node's kernel log, watching its own
# node's pods and Events, publishing to Kafka. Apply with: kubectl apply -f oomstream.yaml
# (set kafka.bootstrap_servers in the ConfigMap first).
#
# GENERATED from the Helm chart deploy/helm/oomstream by `make manifests`: edit the chart, not this.
HEAD
"${HELM:-helm}" template oomstream "$ROOT/deploy/helm/oomstream" --namespace oomstream \
    --set namespace.create=true
