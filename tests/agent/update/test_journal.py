"""The journal survives crashes: atomic replace, fsync, and a readable old journal after a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.contracts.state import DesiredModel, ReportedError, UpdateState
from agent.update.journal import MAX_FAILED, InstalledModel, Journal, JournalStore

MODEL = DesiredModel("m", "2", "onnx-x86", "fp32", "m/2/x.tar", "/artifacts/m/2/x.tar", 123, "b" * 64)


def full_journal() -> Journal:
    return Journal(
        state=UpdateState.INSTALLING,
        generation=7,
        desired=MODEL,
        target_slot="b",
        active=InstalledModel("m", "1", "a" * 64, "a", "m/1/x.tar"),
        previous=None,
        applied_generation=6,
        failed_generations=(3, 5),
        downloaded=123,
        resumes=1,
        error=ReportedError("HASH_MISMATCH", "bad bytes"),
    )


def test_a_fresh_store_gives_an_idle_journal(tmp_path: Path) -> None:
    j = JournalStore(tmp_path / "journal.json").load()
    assert j.state is UpdateState.IDLE and j.active is None and j.generation == 0


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "journal.json")
    written = store.save(full_journal())
    assert written.updated_at > 0
    assert store.load() == written


def test_a_crash_before_the_replace_leaves_the_old_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JournalStore(tmp_path / "journal.json")
    old = store.save(Journal(state=UpdateState.COMMITTED, generation=3, applied_generation=3))

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt("power cut between the temp write and the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(full_journal())
    monkeypatch.undo()
    assert store.load() == old


def test_a_temp_file_left_by_kill_9_is_ignored_and_removed(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "journal.json")
    old = store.save(Journal(state=UpdateState.COMMITTED, generation=3))
    # What a kill -9 after the temp write but before os.replace leaves behind: a half-written temp.
    stale = tmp_path / ".journal.json.abc123.tmp"
    stale.write_text('{"schema": "edgefleet.agent-journal/1", "state": "INSTAL')
    assert store.load() == old
    assert not stale.exists()


def test_save_replaces_atomically_and_leaves_no_temp(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "journal.json")
    store.save(Journal(generation=1))
    store.save(Journal(generation=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]
    assert json.loads((tmp_path / "journal.json").read_text())["generation"] == 2


def test_save_fsyncs_the_file_and_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    JournalStore(tmp_path / "journal.json").save(Journal(generation=1))
    assert any(p.endswith(".tmp") for p in synced)  # the new content, before the rename
    assert str(tmp_path) in synced  # the rename itself


def test_a_corrupt_journal_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    path.write_text("{not json")
    j = JournalStore(path).load()
    assert j == Journal()
    assert [p.name.startswith("journal.json.corrupt-") for p in tmp_path.iterdir()] == [True]


def test_failed_generations_are_bounded_and_deduplicated() -> None:
    j = Journal(failed_generations=tuple(range(MAX_FAILED)))
    gens = j.failed(1000)
    assert len(gens) == MAX_FAILED and gens[-1] == 1000 and 0 not in gens
    assert Journal(failed_generations=(4, 5)).failed(4) == (5, 4)


def test_every_save_counts_and_the_count_survives_a_restart(tmp_path: Path) -> None:
    """The write count orders the device's reports (ReportedState.seq) without its clock."""
    from agent.update.journal import Journal, JournalStore

    store = JournalStore(tmp_path / "journal.json")
    j = store.save(Journal())
    j = store.save(j)
    assert j.writes == 2
    again = JournalStore(tmp_path / "journal.json").load()
    assert again.writes == 2 and store.save(again).writes == 3
