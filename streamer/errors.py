"""Errors shared across the command line (its own module: `python -m streamer.cli` runs cli.py as
`__main__`, and an exception class defined there would not be the one the commands raise)."""


class CliError(Exception):
    """A problem with the user's input that deserves a one-line message, not a traceback."""
