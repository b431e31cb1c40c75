"""Errors shared across the package, in a module that imports nothing (``python -m streamer.cli``
runs cli.py as ``__main__``: an exception class defined there would not be the one commands raise;
and ``oomstream parse`` must not import a Kafka or HTTP client just to name an error)."""

from __future__ import annotations


class CliError(Exception):
    """A problem with the user's input that deserves a one-line message, not a traceback."""


class ConfigError(Exception):
    """A configuration problem; the message names the option, the bad value and where it came from."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key  # dotted option name, when one is at fault


class SinkError(Exception):
    """Base of every sink error. ``setting`` names the configuration key at fault, when one is."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class RetriableSinkError(SinkError):
    """Transient: the same operation may succeed later (broker moved, timed out, connection lost)."""


class FatalSinkError(SinkError):
    """Retrying cannot help: bad configuration, authorization, a record the broker will never take."""


class SinkConfigError(FatalSinkError, ConfigError, ValueError):
    """The sink's configuration is invalid; the message names the key and where it came from.

    A ``ConfigError`` too, so the configuration loader reports it like any other option error.
    """

    def __init__(self, message: str, *, setting: str | None = None, key: str | None = None) -> None:
        Exception.__init__(self, message)
        self.setting = setting
        self.key = key if key is not None else setting
