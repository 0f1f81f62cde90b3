"""A journal that can't be written (a full or read-only data directory): the update is reported
failed with a typed code, unrecorded, the old model serves on, and the next attempt goes through
once the journal can be written again. Here the journal path is made a directory, which the
rename over it refuses for real (the fault tier remounts a tmpfs read-only:
``tests/faults/test_storage_faults.py``; that needs root)."""

from __future__ import annotations

from pathlib import Path

from agent.update.reconciler import Outcome
from tests.agent.agent_testkit import ArtifactServer, BuiltBundle, Recorder, desired_state
from tests.agent.update.test_update_flow import DEVICE, make_reconciler, serve


def test_an_unwritable_journal_is_reported_as_storage_failed_and_the_old_model_serves(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    rec = Recorder()
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    try:
        assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.APPLIED
        journal = tmp_path / "data" / "journal.json"
        kept = journal.read_bytes()
        journal.unlink()
        (journal / "in-the-way").mkdir(parents=True)  # os.replace over it fails

        assert r.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.RETRY
        last = rec.last
        assert (last.generation, str(last.state), last.active) == (2, "IDLE", "linear:1")
        assert last.error.code == "STORAGE_FAILED" and "journal" in last.error.message
        assert str(r.journal.state) == "COMMITTED" and r.journal.generation == 1  # as on disk
        assert serve(r)[0] == "linear:1"

        (journal / "in-the-way").rmdir()
        journal.rmdir()
        journal.write_bytes(kept)
        assert r.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.APPLIED
        assert serve(r)[0] == "linear:2" and str(rec.last.state) == "COMMITTED"
    finally:
        r.registry.close()
