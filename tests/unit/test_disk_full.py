"""A full disk under the spool and the state directory: the service starts and goes on (issue 9,
fault matrix row 6, which runs the real thing on a full tmpfs)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from streamer import checkpoint as checkpoint_module
from streamer.checkpoint import CheckpointStore
from streamer.spool import Spool


def test_spool_opens_without_room_for_a_segment_and_creates_it_on_a_later_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_new_segment = Spool._new_segment
    full = True

    def new_segment(self: Spool, seq: int) -> object:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_new_segment(self, seq)

    monkeypatch.setattr(Spool, "_new_segment", new_segment)
    with caplog.at_level(logging.ERROR), Spool(str(tmp_path), 1 << 20, 1 << 16) as spool:
        assert "cannot create a segment (No space left on device)" in caplog.text
        with pytest.raises(OSError):
            spool.append(None, b"first")
        assert spool.stats().write_errors == 1 and spool.events == 0
        full = False  # room again
        spool.append(None, b"second")
        assert [record.value for record in spool.peek(5)] == [b"second"]
    with Spool(str(tmp_path), 1 << 20, 1 << 16) as reopened:
        assert [record.value for record in reopened.peek(5)] == [b"second"]


def test_a_failed_checkpoint_save_is_counted_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        store.save("kmsg", {"seq": 1})

        def no_room(path: str, data: bytes, *, durable: bool = True) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(checkpoint_module, "atomic_write", no_room)
        with pytest.raises(OSError):
            store.save("kmsg", {"seq": 2})
        assert store.counts["save_errors"] == 1 and store.counts["saves"] == 1
        assert store.load("kmsg") == {"seq": 1}
