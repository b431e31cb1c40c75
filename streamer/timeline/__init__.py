"""SRE incident timelines: ``oomstream timeline`` (model, sources, terminal view, HTML page, live server)."""
