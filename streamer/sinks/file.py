"""JSON-lines file sink: append-only, one ``write(2)`` per line, fsync on flush.

``ack_on="write"`` (default) acknowledges as soon as the line is in the kernel's page cache: it
survives a crash of this process, not of the machine. ``ack_on="fsync"`` holds the results until
the next ``flush()`` has fsynced the file, for callers that checkpoint source positions and need
the line to survive a power loss first.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from streamer.config import OptionError, option_help
from streamer.registry import BuildContext, Component
from streamer.sinks.base import (
    DeliveryCallback,
    DeliveryResult,
    DeliveryStatus,
    SinkConfigError,
    SinkError,
)
from streamer.sinks.stdout import JsonLinesSink

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry  # loaded with the metrics, not by check-config

AckOn = Literal["write", "fsync"]


def _open_append(path: str, setting: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise SinkConfigError(
            f"{setting}={path!r}: cannot open for appending: {error.strerror or error}", setting=setting
        ) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FileSink(JsonLinesSink):
    def __init__(
        self,
        path: str,
        *,
        dead_letter_path: str | None = None,
        ack_on: AckOn = "write",
        name: str = "file",
        on_delivery: DeliveryCallback | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if ack_on not in ("write", "fsync"):
            raise SinkConfigError(f"ack_on={ack_on!r}: expected 'write' or 'fsync'", setting="ack_on")
        super().__init__(name=name, on_delivery=on_delivery, registry=registry)
        self.path = path
        self.dead_letter_path = dead_letter_path
        self.ack_on = ack_on
        self._fd: int | None = None
        self._dead_fd: int | None = None
        self._held: list[DeliveryResult] = []  # ack_on="fsync": waiting for the next fsync
        self._dirty = False

    async def start(self) -> None:
        if self._fd is None:
            self._fd = _open_append(self.path, "path")
            if self.dead_letter_path is not None:
                self._dead_fd = _open_append(self.dead_letter_path, "dead_letter_path")
        await super().start()

    def _write_event(self, data: bytes) -> None:
        assert self._fd is not None
        _write_all(self._fd, data)
        self._dirty = True

    def _write_dead_letter(self, data: bytes) -> bool:
        if self._dead_fd is None:
            return False
        _write_all(self._dead_fd, data)
        self._dirty = True
        return True

    def _deliver(self, result: DeliveryResult) -> None:
        if self.ack_on == "fsync":
            self._held.append(result)
        else:
            self._report(result)

    async def flush(self, timeout_seconds: float | None = None) -> None:
        held, self._held = self._held, []
        if self._dirty:
            self._dirty = False
            fds = [fd for fd in (self._fd, self._dead_fd) if fd is not None]
            try:
                # fsync can take long on a busy disk: keep the event loop free meanwhile.
                await asyncio.wait_for(asyncio.to_thread(_fsync_all, fds), timeout_seconds)
            except (OSError, TimeoutError) as error:
                self._dirty = True
                self._held = held + self._held
                raise SinkError(f"{self.name} sink: fsync of {self.path} failed: {error}") from error
        for result in held:
            self._report(result)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._fd is not None:
                await self.flush()
        except SinkError as error:
            # Not known to be durable: the pipeline must not checkpoint these positions.
            held, self._held = self._held, []
            for result in held:
                self._report(
                    result._replace(status=DeliveryStatus.FAILED, reason="fsync_error", error=str(error))
                )
            raise
        finally:
            self._closed = True
            for fd in (self._fd, self._dead_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._dead_fd = None


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)


# -- the component: [sinks.file] -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileSinkOptions:
    path: str | None = field(default=None, metadata=option_help("the JSON-lines file events are appended to"))

    def check_config(self, enabled: tuple[str, ...]) -> None:
        """``enabled``: sinks.enabled."""
        if "file" in enabled and not self.path:
            raise OptionError("path", "required when sinks.enabled has 'file'")
        if self.path and "file" not in enabled:
            raise OptionError("path", f"is set but sinks.enabled = {list(enabled)!r} writes no file")


async def build(options: FileSinkOptions, context: BuildContext) -> FileSink:
    assert options.path is not None  # check_config
    return FileSink(options.path, on_delivery=context.on_delivery, registry=context.metrics.registry)


COMPONENT = Component(options=FileSinkOptions, build=build, help="JSON lines appended to a file")
