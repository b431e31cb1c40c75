"""Checkpoint files: round trip, safe names, atomic replacement, crash leftovers, corruption, locking."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from streamer import checkpoint
from streamer.checkpoint import CheckpointError, CheckpointStore, atomic_write, checkpoint_file_name

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_and_absent(tmp_path: Path) -> None:
    with CheckpointStore(str(tmp_path / "state")) as store:
        assert store.load("kmsg") is None
        store.save("kmsg", {"boot_id": "b1", "seq": 42})
        assert store.load("kmsg") == {"boot_id": "b1", "seq": 42}
        store.save("kmsg", {"boot_id": "b1", "seq": 43})
        assert store.load("kmsg") == {"boot_id": "b1", "seq": 43}
        assert store.counts["saves"] == 2
        store.delete("kmsg")
        assert store.load("kmsg") is None
    assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"


def test_survives_reopening(tmp_path: Path) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        store.save("journald", {"cursor": "s=abc;i=1"})
    with CheckpointStore(str(tmp_path)) as store:
        assert store.load("journald") == {"cursor": "s=abc;i=1"}


@pytest.mark.parametrize(
    "name",
    [
        "kmsg",
        "file:/var/log/kern.log",
        "file:../../etc/passwd",
        "a/b",
        "a:b",
        "ü n i c ø d e",
        "x" * 500,
        "",
        ".",
    ],
)
def test_file_names_are_safe_for_any_source_name(tmp_path: Path, name: str) -> None:
    file_name = checkpoint_file_name(name)
    assert "/" not in file_name and not file_name.startswith(".")
    assert len(file_name.encode()) < 255
    with CheckpointStore(str(tmp_path)) as store:
        store.save(name, {"n": name})
        assert store.load(name) == {"n": name}
        assert os.path.dirname(store.path_for(name)) == str(tmp_path)


def test_names_that_escape_alike_stay_distinct(tmp_path: Path) -> None:
    assert checkpoint_file_name("a/b") != checkpoint_file_name("a:b")
    with CheckpointStore(str(tmp_path)) as store:
        store.save("a/b", {"v": 1})
        store.save("a:b", {"v": 2})
        assert store.load("a/b") == {"v": 1}
        assert store.load("a:b") == {"v": 2}


def test_save_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    with CheckpointStore(str(tmp_path)) as store:
        monkeypatch.setattr(os, "fsync", spy)
        store.save("kmsg", {"seq": 1})
    assert any(path.endswith(".tmp") for path in synced), synced  # the data, before the rename
    assert str(tmp_path) in synced  # the directory entry, after it


def test_failed_rename_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        store.save("kmsg", {"seq": 1})

        def broken_replace(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError):
            store.save("kmsg", {"seq": 2})
        monkeypatch.undo()
        assert store.load("kmsg") == {"seq": 1}
        assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_crash_before_rename_leaves_old_checkpoint_and_a_temp_file_that_is_cleaned(tmp_path: Path) -> None:
    """A process killed between writing the temp file and renaming it (os._exit: no cleanup)."""
    with CheckpointStore(str(tmp_path)) as store:
        store.save("kmsg", {"seq": 1})
    script = textwrap.dedent(
        f"""
        import os
        from streamer.checkpoint import CheckpointStore
        store = CheckpointStore({str(tmp_path)!r})
        os.replace = lambda src, dst: os._exit(9)
        store.save("kmsg", {{"seq": 2}})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=False)
    assert result.returncode == 9
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(leftovers) == 1
    with CheckpointStore(str(tmp_path)) as store:
        assert store.load("kmsg") == {"seq": 1}
        assert store.counts["temp_removed"] == 1
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not JSON"),
        (b'{"version": 1, "source": "kmsg", "data": {"seq"', "not JSON"),
        (b"\x00\xff garbage", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": 99, "source": "kmsg", "data": {}}', "unsupported version 99"),
        (b'{"version": 1, "source": "journald", "data": {}, "checksum": 0}', "written for source 'journald'"),
        (b'{"version": 1, "source": "kmsg", "data": 5}', "no data object"),
    ],
)
def test_corrupt_files_are_logged_counted_and_treated_as_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, problem: str
) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        path = store.path_for("kmsg")
        Path(path).write_bytes(content)
        with caplog.at_level(logging.WARNING, logger="oomstream.checkpoint"):
            assert store.load("kmsg") is None
        assert store.counts["corrupt"] == 1
        assert problem in caplog.text and "'kmsg'" in caplog.text
        assert Path(path + ".corrupt").read_bytes() == content  # kept for a post-mortem
        store.save("kmsg", {"seq": 5})  # and the next save works
        assert store.load("kmsg") == {"seq": 5}


def test_checksum_catches_an_edited_value(tmp_path: Path) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        store.save("kmsg", {"seq": 100})
        path = Path(store.path_for("kmsg"))
        envelope = orjson.loads(path.read_bytes())
        envelope["data"]["seq"] = 1_000_000
        path.write_bytes(orjson.dumps(envelope))
        assert store.load("kmsg") is None
        assert store.counts["corrupt"] == 1


def test_unreadable_file_is_treated_as_absent(tmp_path: Path) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        os.mkdir(store.path_for("kmsg"))  # EISDIR on open
        assert store.load("kmsg") is None
        assert store.counts["corrupt"] == 1


def test_one_process_per_directory(tmp_path: Path) -> None:
    first = CheckpointStore(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"in use by another oomstream process \(pid \d+\)"):
        CheckpointStore(str(tmp_path))
    first.close()
    CheckpointStore(str(tmp_path)).close()
    # Tests and tools may opt out (read-only inspection).
    with CheckpointStore(str(tmp_path)), CheckpointStore(str(tmp_path), lock=False):
        pass


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot create"):
        CheckpointStore(str(blocker / "state"))


def test_atomic_write_non_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    atomic_write(str(tmp_path / "x"), b"data", durable=False)
    assert (tmp_path / "x").read_bytes() == b"data"
    assert calls == []


def test_lock_file_name_does_not_clash_with_the_spool(tmp_path: Path) -> None:
    from streamer import spool

    assert checkpoint.LOCK_NAME != spool.LOCK_NAME
    with CheckpointStore(str(tmp_path)), spool.Spool(str(tmp_path), 65536, 4096):
        pass
