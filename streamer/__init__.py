"""oomstream service: sources, pipeline, enrichment, sinks, config, metrics, CLI."""

from importlib import metadata


def package_version() -> str:
    """The installed oomstream version (``--version``, ``oomstream_build_info``, image labels)."""
    try:
        return metadata.version("oomstream")
    except metadata.PackageNotFoundError:
        return "unknown"
