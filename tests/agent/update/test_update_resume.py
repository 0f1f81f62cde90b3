"""Crash recovery: the agent dies at each step of an update (a BaseException the reconciler does
not catch, leaving disk and journal exactly as ``kill -9`` would), a new reconciler starts on the
same data directory, and the resume table decides: resume, restart from verify, or roll back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.contracts.state import ErrorCode, UpdateState
from agent.update import reconciler as reconciler_module
from agent.update.machine import MAX_RESUMES
from agent.update.reconciler import Outcome, Reconciler
from agent.update.slots import SlotStore
from tests.agent.agent_testkit import ArtifactServer, BuiltBundle, Recorder, desired_state
from tests.agent.update.test_update_flow import DEVICE, expected, make_reconciler, serve


class Crash(BaseException):
    """The process dies here."""


@pytest.fixture
def started(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> Iterator[tuple[Reconciler, Path]]:
    """A reconciler with v1 committed in slot a; v2 is on the server."""
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    r = make_reconciler(tmp_path / "data", artifact_server, Recorder())
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.APPLIED
    yield r, tmp_path / "data"
    r.registry.close()


def restart(data: Path, server: ArtifactServer) -> tuple[Reconciler, Recorder]:
    rec = Recorder()
    r = make_reconciler(data, server, rec)
    r.restore()
    return r, rec


def crash_update(r: Reconciler, bundle: BuiltBundle, generation: int = 2) -> None:
    with pytest.raises(Crash):
        r.apply(desired_state(DEVICE, generation, bundle.model))
    r.registry.close()


def test_killed_while_downloading_resumes_with_range(
    started: tuple[Reconciler, Path], artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    r, data = started
    v2 = bundles["2"]
    artifact_server.behaviour.cut_after, artifact_server.behaviour.cuts_left = 4096, 1
    original = r.downloader._transfer

    def die_after_first_attempt(*args: Any, **kwargs: Any) -> bool:
        try:
            return original(*args, **kwargs)
        except Exception:
            raise Crash() from None

    r.downloader._transfer = die_after_first_attempt  # type: ignore[method-assign]
    crash_update(r, v2)
    assert r.journal.state is UpdateState.DOWNLOADING
    assert r.downloader.partial_size(v2.model) == 4096

    again, rec = restart(data, artifact_server)
    assert serve(again)[0] == "linear:1"  # serving at once, before the update goes on
    assert again.resume() is Outcome.APPLIED
    assert rec.states(2) == ["DOWNLOADING", "VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
    assert artifact_server.requests[-1]["range"] == "bytes=4096-"
    assert serve(again)[0] == "linear:2"
    np.testing.assert_allclose(serve(again)[1], expected(v2), rtol=1e-5)


def test_a_download_interrupted_more_often_than_max_resumes_still_completes(
    started: tuple[Reconciler, Path], artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    """A device rebooted again and again during a long download goes on downloading: the
    generation is not failed and the partial download is kept."""
    r, data = started
    v2 = bundles["2"]
    stops = MAX_RESUMES + 2
    artifact_server.behaviour.cut_after, artifact_server.behaviour.cuts_left = 1024, stops + 1

    def die_on_a_cut(reconciler: Reconciler) -> None:
        original = reconciler.downloader._transfer

        def transfer(*args: Any, **kwargs: Any) -> bool:
            try:
                return original(*args, **kwargs)
            except Exception:
                raise Crash() from None

        reconciler.downloader._transfer = transfer  # type: ignore[method-assign]

    die_on_a_cut(r)
    crash_update(r, v2)
    for n in range(stops):
        again, rec = restart(data, artifact_server)
        die_on_a_cut(again)
        with pytest.raises(Crash):
            again.resume()
        again.registry.close()
        assert again.journal.state is UpdateState.DOWNLOADING, f"stop {n + 2}"
        assert again.journal.failed_generations == ()
        assert again.downloader.partial_size(v2.model) == 1024 * (n + 2)

    last, rec = restart(data, artifact_server)
    assert last.resume() is Outcome.APPLIED
    assert rec.states(2) == ["DOWNLOADING", "VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
    assert artifact_server.requests[-1]["range"] == f"bytes={1024 * (stops + 1)}-"
    assert serve(last)[0] == "linear:2"


def test_a_roll_back_from_downloading_is_retryable(
    started: tuple[Reconciler, Path], artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    """A journal left in DOWNLOADING that can't be resumed (it names no model) rolls back, but
    nothing was installed, so the generation is not marked failed: its next delivery tries again."""
    r, data = started
    r._save(state=UpdateState.DOWNLOADING, generation=2, desired=None)
    r.registry.close()

    again, rec = restart(data, artifact_server)
    assert again.resume() is Outcome.RETRY
    assert rec.states(2) == ["ROLLING_BACK", "IDLE"]
    assert rec.last.error.code == ErrorCode.DOWNLOAD_FAILED
    assert again.journal.failed_generations == ()
    assert again.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.APPLIED
    assert serve(again)[0] == "linear:2"


def test_killed_while_installing_restarts_from_verify(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, data = started

    def half_install(self: SlotStore, tar_path: Path, slot: str) -> None:
        (self.path(slot)).mkdir(parents=True, exist_ok=True)
        (self.path(slot) / "model.onnx").write_bytes(b"half written")
        raise Crash()

    with monkeypatch.context() as m:
        m.setattr(SlotStore, "install", half_install)
        crash_update(r, bundles["2"])
    assert r.journal.state is UpdateState.INSTALLING and r.journal.target_slot == "b"

    n_requests = len(artifact_server.requests)
    again, rec = restart(data, artifact_server)
    assert serve(again)[0] == "linear:1"
    assert again.resume() is Outcome.APPLIED
    assert rec.states(2) == ["VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
    assert len(artifact_server.requests) == n_requests  # the complete download was reused
    assert serve(again)[0] == "linear:2"
    assert (
        again.journal.resumes == 0 and again.journal.active is not None and again.journal.active.slot == "b"
    )


def die_at(r: Reconciler, where: str, m: pytest.MonkeyPatch) -> None:
    """Make ``r`` die (as ``kill -9`` would) when it loads, or when it self-tests, the new model."""

    def die(*_args: Any, **_kwargs: Any) -> Any:
        raise Crash()

    if where == "loader":
        r._loader = die
    else:
        m.setattr(reconciler_module, "run_selftest", die)


@pytest.mark.parametrize(("where", "state"), [("loader", "LOADING"), ("selftest", "SELF_TEST")])
def test_killed_while_loading_or_self_testing_resumes_the_update(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    state: str,
) -> None:
    """One power cut while loading (minutes of TensorRT engine build on a Jetson) is ordinary:
    the update goes on from the verified download, and the report says it was resumed."""
    r, data = started
    with monkeypatch.context() as m:
        die_at(r, where, m)
        crash_update(r, bundles["2"])
    assert r.journal.state == state

    n_requests = len(artifact_server.requests)
    again, rec = restart(data, artifact_server)
    assert serve(again)[0] == "linear:1"
    assert again.resume() is Outcome.APPLIED
    assert rec.states(2) == ["VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
    assert rec.last.error is None
    assert rec.last.recovery == f"resumed after a crash at {state} (1 of {MAX_RESUMES})"
    assert len(artifact_server.requests) == n_requests  # the complete download was reused
    assert serve(again)[0] == "linear:2"
    # The next update starts with a clean slate.
    assert again.apply(desired_state(DEVICE, 3, bundles["1"].model)) is Outcome.APPLIED
    assert rec.last.recovery is None and again.journal.resumes == 0


@pytest.mark.parametrize(
    ("where", "state", "code"),
    [("loader", "LOADING", ErrorCode.LOAD_FAILED), ("selftest", "SELF_TEST", ErrorCode.SELF_TEST_FAILED)],
)
def test_a_load_that_keeps_killing_the_agent_is_rolled_back_after_the_bound(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    state: str,
    code: ErrorCode,
) -> None:
    r, data = started
    with monkeypatch.context() as m:
        die_at(r, where, m)
        crash_update(r, bundles["2"])
    for n in range(MAX_RESUMES):
        again, rec = restart(data, artifact_server)
        with monkeypatch.context() as m:
            die_at(again, where, m)
            with pytest.raises(Crash):
                again.resume()
        again.registry.close()
        assert rec.last.recovery == f"resumed after a crash at {state} ({n + 1} of {MAX_RESUMES})"

    last, rec = restart(data, artifact_server)
    assert last.resume() is Outcome.FAILED
    assert rec.states(2) == ["ROLLING_BACK", "IDLE"]
    crashes = MAX_RESUMES + 1
    message = f"rolled back after {crashes} crashes during this update, the last at {state}"
    assert rec.last.error.code == code and rec.last.error.message == message
    assert rec.last.recovery == message
    assert serve(last)[0] == "linear:1"
    assert not (data / "slots" / "b").exists()
    # A model that killed the agent is not tried again when the retained desired state returns.
    assert last.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.IGNORED


def test_an_update_that_keeps_killing_the_agent_is_rolled_back(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, data = started

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise Crash()

    monkeypatch.setattr(SlotStore, "install", die)
    crash_update(r, bundles["2"])
    for _ in range(MAX_RESUMES):
        again, _ = restart(data, artifact_server)
        with pytest.raises(Crash):
            again.resume()
        again.registry.close()
    monkeypatch.undo()
    last, rec = restart(data, artifact_server)
    assert last.resume() is Outcome.FAILED
    assert rec.states(2) == ["ROLLING_BACK", "IDLE"]
    assert serve(last)[0] == "linear:1"


def test_killed_between_commit_and_swap_serves_the_new_model(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, data = started

    def die(*_args: Any) -> None:
        raise Crash()

    with monkeypatch.context() as m:
        m.setattr(r.registry, "swap", die)
        with pytest.raises(Crash):
            r.apply(desired_state(DEVICE, 2, bundles["2"].model))
    assert r.journal.state is UpdateState.COMMITTED
    again, _ = restart(data, artifact_server)
    assert again.resume() is Outcome.IGNORED
    assert serve(again)[0] == "linear:2"


def test_killed_while_rolling_back_finishes_the_roll_back(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, data = started

    def bad_selftest(*_args: Any) -> str:
        from agent.errors import DeviceError

        raise DeviceError("outputs differ", ErrorCode.SELF_TEST_FAILED)

    real_clear = SlotStore.clear

    def die_while_rolling_back(self: SlotStore, slot: str) -> None:
        if r.journal.state is UpdateState.ROLLING_BACK:
            raise Crash()
        real_clear(self, slot)

    monkeypatch.setattr(reconciler_module, "run_selftest", bad_selftest)
    monkeypatch.setattr(SlotStore, "clear", die_while_rolling_back)
    crash_update(r, bundles["2"])
    assert r.journal.state is UpdateState.ROLLING_BACK
    monkeypatch.undo()

    again, rec = restart(data, artifact_server)
    assert again.resume() is Outcome.FAILED
    assert rec.last.state is UpdateState.IDLE and rec.last.error.code == ErrorCode.SELF_TEST_FAILED
    assert serve(again)[0] == "linear:1"
    assert not (data / "slots" / "b").exists()


@pytest.mark.parametrize("where", ["loader", "selftest"])
def test_an_orderly_stop_while_loading_or_self_testing_restarts_from_verify(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """SIGTERM (a reboot, systemctl restart) cut a long load short: nothing speaks against the
    model, so the next start installs it again from the verified download instead of failing it."""
    from agent.update import clean_stop

    r, data = started

    def die(*_args: Any, **_kwargs: Any) -> Any:
        raise Crash()

    with monkeypatch.context() as m:
        if where == "loader":
            r._loader = die
        else:
            m.setattr(reconciler_module, "run_selftest", die)
        crash_update(r, bundles["2"])
    assert r.journal.state in (UpdateState.LOADING, UpdateState.SELF_TEST)
    clean_stop.mark(data, r.journal.writes)  # what the daemon does after stopping the worker

    again, rec = restart(data, artifact_server)
    again.clean_stop = clean_stop.take(data, again.journal.writes)
    assert again.clean_stop and not (data / clean_stop.MARKER).exists()
    assert again.resume() is Outcome.APPLIED
    assert rec.states(2) == ["VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
    assert serve(again)[0] == "linear:2"


def test_a_stop_marker_older_than_the_journal_is_not_an_orderly_stop(tmp_path: Path) -> None:
    from agent.update import clean_stop

    clean_stop.mark(tmp_path, 7)
    assert clean_stop.take(tmp_path, 8) is False  # the journal was written after the stop
    assert clean_stop.take(tmp_path, 7) is False  # the marker speaks for one start only
    clean_stop.mark(tmp_path, 9)
    assert clean_stop.take(tmp_path, 9) is True


def test_the_stop_marker_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from agent.update import clean_stop

    synced: list[Path] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    clean_stop.mark(tmp_path, 3)
    assert synced[-1] == tmp_path.resolve()  # the marker's rename survives the reboot that follows
    # A mark cut short by the power cut leaves a temp file; the next start clears it.
    (tmp_path / f".{clean_stop.MARKER}.x1.tmp").write_text("4")
    assert clean_stop.take(tmp_path, 3) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_killed_right_after_commit_the_download_is_removed_at_the_next_start(
    started: tuple[Reconciler, Path],
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, data = started

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise Crash()

    with monkeypatch.context() as m:
        m.setattr(r.downloader, "cleanup", die)
        with pytest.raises(Crash):
            r.apply(desired_state(DEVICE, 2, bundles["2"].model))
    r.registry.close()
    assert r.journal.state is UpdateState.COMMITTED
    assert r.downloader.done_path(bundles["2"].model).is_file()

    again, _ = restart(data, artifact_server)
    assert again.resume() is Outcome.IGNORED
    assert sorted(p.name for p in (data / "downloads").iterdir()) == []
    assert serve(again)[0] == "linear:2"


def test_a_download_that_will_be_retried_is_kept_at_the_next_start(
    started: tuple[Reconciler, Path], artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    r, data = started
    v2 = bundles["2"]
    artifact_server.behaviour.cut_after, artifact_server.behaviour.cuts_left = 2048, 2  # every attempt
    assert r.apply(desired_state(DEVICE, 2, v2.model)) is Outcome.RETRY
    assert r.journal.state is UpdateState.IDLE and r.downloader.partial_size(v2.model) > 0
    r.registry.close()
    (data / "downloads" / f"{'0' * 64}.tar").write_bytes(b"left by an older update")

    again, _ = restart(data, artifact_server)
    assert again.resume() is Outcome.IGNORED
    assert sorted(p.name for p in (data / "downloads").iterdir()) == [f"{v2.model.sha256}.part"]
    assert again.apply(desired_state(DEVICE, 2, v2.model)) is Outcome.APPLIED
    assert artifact_server.requests[-1]["range"] is not None
