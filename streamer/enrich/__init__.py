"""Enrichment: pid -> cgroup index, Kubernetes pod metadata."""
