"""oomstream service: sources, pipeline, enrichment, sinks, config, metrics, CLI."""
