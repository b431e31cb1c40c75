"""auto_select: kmsg first, then journald, else an error that says what was tried."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from parsers.records import SourcePosition
from streamer.sources.base import SourceError
from streamer.sources.journald import JournaldOptions, JournaldSource
from streamer.sources.kmsg import KmsgOptions, KmsgSource
from streamer.sources.select import auto_select, probe_kmsg

ENTRY = '{"__CURSOR":"s=1;i=1","_TRANSPORT":"kernel","MESSAGE":"hello"}'


def fake_journalctl(tmp_path: Path, output: str = ENTRY, rc: int = 0) -> str:
    script = tmp_path / "journalctl"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint({output!r})\nsys.exit({rc})\n")
    script.chmod(0o755)
    return str(script)


# A character device that reads like an empty /dev/kmsg, on any host (the real device needs
# root or CAP_SYSLOG): the probe accepts it, so these tests do not depend on the machine.
READABLE_KMSG = os.devnull


async def test_prefers_kmsg_when_readable(tmp_path: Path) -> None:
    assert probe_kmsg(READABLE_KMSG) is None
    source = await auto_select(kmsg=KmsgOptions(path=READABLE_KMSG), journalctl=fake_journalctl(tmp_path))
    assert isinstance(source, KmsgSource) and source.start_position() is None
    saved = {"kind": "kmsg", "seq": 5, "boot_id": source.boot_id}
    source = await auto_select(
        kmsg_checkpoint=saved, kmsg=KmsgOptions(path=READABLE_KMSG), journalctl=fake_journalctl(tmp_path)
    )
    assert isinstance(source, KmsgSource) and source.start_position() == SourcePosition(kind="kmsg", seq=5)
    assert source._checkpoint_boot_id == saved["boot_id"]


async def test_journald_checkpoint_keeps_journald(tmp_path: Path) -> None:
    saved = {"kind": "journald", "cursor": "s=1;i=9"}
    source = await auto_select(
        journald_checkpoint=saved, kmsg=KmsgOptions(path=READABLE_KMSG), journalctl=fake_journalctl(tmp_path)
    )
    assert isinstance(source, JournaldSource)
    assert source.start_position() == SourcePosition(kind="journald", cursor="s=1;i=9")


async def test_falls_back_to_journald(tmp_path: Path) -> None:
    source = await auto_select(
        kmsg=KmsgOptions(path=str(tmp_path / "kmsg")), journalctl=fake_journalctl(tmp_path)
    )
    assert isinstance(source, JournaldSource)


async def test_not_a_device(tmp_path: Path) -> None:
    fake = tmp_path / "kmsg"
    fake.write_bytes(b"6,1,1,-;plain file\n")
    assert probe_kmsg(str(fake)) == f"{fake}: not a character device"


async def test_nothing_usable_explains_everything(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        await auto_select(kmsg=KmsgOptions(path=str(tmp_path / "kmsg")), journalctl="no-such-journalctl")
    message = str(info.value)
    assert f"{tmp_path / 'kmsg'}: No such file or directory" in message
    assert "'no-such-journalctl' not found in PATH" in message
    assert "configure a source explicitly" in message


async def test_journal_without_kernel_entries_is_not_usable(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="shows no kernel entries"):
        await auto_select(
            kmsg=KmsgOptions(path=str(tmp_path / "kmsg")),
            journalctl=fake_journalctl(tmp_path, "-- No entries --"),
        )


async def test_failing_journalctl_reports_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "journalctl"
    script.write_text("#!/bin/sh\necho 'Failed to open journal: Permission denied' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(SourceError, match="Permission denied"):
        await auto_select(kmsg=KmsgOptions(path=os.devnull + "-missing"), journalctl=str(script))


async def test_start_options_apply_to_the_chosen_source(tmp_path: Path) -> None:
    """sources.kmsg.start and sources.journald.since mean the same under auto as when explicit."""
    saved = {"kind": "kmsg", "seq": 5, "boot_id": "boot"}
    source = await auto_select(
        kmsg_checkpoint=saved, kmsg=KmsgOptions(path=READABLE_KMSG, start="end"),
        journalctl=fake_journalctl(tmp_path),
    )  # fmt: skip
    assert isinstance(source, KmsgSource) and source._start == "end"
    source = await auto_select(
        kmsg=KmsgOptions(path=str(tmp_path / "kmsg")), journald=JournaldOptions(since="-1h"),
        journalctl=fake_journalctl(tmp_path),
    )  # fmt: skip
    assert isinstance(source, JournaldSource) and source._since == "-1h"
