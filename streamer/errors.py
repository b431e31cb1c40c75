"""Errors shared across the command line (its own module: `python -m streamer.cli` runs cli.py as
`__main__`, and an exception class defined there would not be the one the commands raise)."""


class CliError(Exception):
    """A problem with the user's input that deserves a one-line message, not a traceback."""


class ConfigError(Exception):
    """A configuration problem; the message names the option, the bad value and where it came from.

    Here rather than in streamer.config so that component modules (whose options dataclasses
    streamer.config lists) can raise it without importing streamer.config."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key  # dotted option name, when one is at fault
