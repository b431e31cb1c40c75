"""Subcommands of `oomstream` that live outside streamer/cli.py (each exposes add_parser)."""
