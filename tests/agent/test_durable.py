"""agent.durable: the one atomic, durable file write (temp file, fsync, replace, directory fsync)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.durable import atomic_write, atomic_writer, remove_stale_temps


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """Patch ``os.fsync`` and ``os.replace`` to log, in order, what was synced and what replaced."""
    events: list[tuple[str, Path]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_the_file_is_synced_before_the_replace_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _record_fsyncs(monkeypatch)
    target = tmp_path / "state.json"
    atomic_write(target, b"new")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].name.startswith(".state.json.") and events[0][1].suffix == ".tmp"
    assert events[1][1] == target
    assert events[2][1] == tmp_path.resolve()  # the rename itself survives a power cut
    assert target.read_bytes() == b"new"


def test_the_streaming_writer_replaces_on_a_clean_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"old")
    events = _record_fsyncs(monkeypatch)
    with atomic_writer(target) as fh:
        fh.write(b"part one, ")
        fh.write(b"part two")
        assert target.read_bytes() == b"old"  # nothing shows until the block ends
    assert target.read_bytes() == b"part one, part two"
    assert events[-1] == ("fsync", tmp_path.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt("power cut")])
def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, failure: BaseException) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"old")
    with pytest.raises(type(failure)), atomic_writer(target) as fh:
        fh.write(b"half")
        raise failure
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_stale_temps_of_one_file_are_removed_and_others_kept(tmp_path: Path) -> None:
    target = tmp_path / "journal.json"
    target.write_bytes(b"{}")
    stale = tmp_path / ".journal.json.abc123.tmp"
    stale.write_bytes(b"half")
    other = tmp_path / ".other.json.abc123.tmp"
    other.write_bytes(b"someone else's")
    remove_stale_temps(target)
    assert not stale.exists()
    assert other.exists() and target.exists()


def test_a_missing_directory_is_an_error_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "absent" / "file", b"x")
    assert not (tmp_path / "absent").exists()
