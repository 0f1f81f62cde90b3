"""The update worker: coalesces desired states, cancels a stale download, retries network failures."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest

from agent.backoff import Backoff
from agent.contracts.state import UpdateState
from agent.update.reconciler import Outcome
from agent.update.worker import UpdateWorker
from tests.agent.agent_testkit import (
    ArtifactServer,
    BuiltBundle,
    Recorder,
    desired_model,
    desired_state,
    make_bundle,
    tar_bundle,
)
from tests.agent.conftest import SAMPLES
from tests.agent.update.test_update_flow import DEVICE, FULL_UPDATE, make_reconciler, serve
from tests.polling import wait_until

wait = functools.partial(wait_until, timeout=20.0, interval=0.01)


@pytest.fixture
def slow(tmp_path: Path, bundles: dict[str, BuiltBundle], artifact_server: ArtifactServer) -> BuiltBundle:
    d = make_bundle(tmp_path / "slow", bundles["1"].onnx, "linear", "slow", SAMPLES, extra_bytes=1_000_000)
    tar = tar_bundle(d, tmp_path / "slow.tar")
    b = BuiltBundle("linear", "slow", d, tar, desired_model(tar, "linear", "slow"), bundles["1"].onnx)
    artifact_server.add(b.model, b.tar)
    artifact_server.behaviour.chunk, artifact_server.behaviour.throttle_s = 16 << 10, 0.02
    return b


def test_a_newer_generation_cancels_the_download_in_progress(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], slow: BuiltBundle
) -> None:
    artifact_server.add(bundles["2"].model, bundles["2"].tar)
    rec = Recorder()
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    worker = UpdateWorker(r)
    worker.start()
    try:
        worker.submit(desired_state(DEVICE, 1, slow.model))
        wait(lambda: any(x.generation == 1 and x.progress for x in rec.reports))
        worker.submit(desired_state(DEVICE, 2, bundles["2"].model))
        wait(
            lambda: bool(rec.reports) and rec.last.state is UpdateState.COMMITTED and rec.last.generation == 2
        )
    finally:
        assert worker.stop()
    assert rec.states(1) == ["DOWNLOADING", "IDLE"]
    cancelled = [x for x in rec.reports if x.generation == 1][-1]
    assert cancelled.error is None
    assert rec.states(2) == FULL_UPDATE
    assert serve(r)[0] == "linear:2"


def test_older_generations_are_dropped_when_coalescing(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    rec = Recorder()
    worker = UpdateWorker(make_reconciler(tmp_path / "data", artifact_server, rec))
    worker.submit(desired_state(DEVICE, 3, bundles["2"].model))
    worker.submit(desired_state(DEVICE, 2, bundles["1"].model))  # arrives late, older: dropped
    worker.start()
    try:
        assert worker.wait_idle(20)
    finally:
        worker.stop()
    assert {x.generation for x in rec.reports} == {3}
    assert rec.last.active == "linear:2"


def test_a_network_failure_is_retried_after_a_backoff(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle]
) -> None:
    v1 = bundles["1"]
    artifact_server.add(v1.model, v1.tar)
    artifact_server.behaviour.fail_status, artifact_server.behaviour.fails_left = 503, 4  # two whole attempts
    rec = Recorder()
    worker = UpdateWorker(make_reconciler(tmp_path / "data", artifact_server, rec), retry=Backoff(0.05, 0.1))
    worker.start()
    try:
        worker.submit(desired_state(DEVICE, 1, v1.model))
        wait(lambda: bool(rec.reports) and rec.last.state is UpdateState.COMMITTED)
    finally:
        worker.stop()
    assert rec.states(1) == ["DOWNLOADING", "IDLE", "DOWNLOADING", "IDLE", *FULL_UPDATE]


def test_stop_interrupts_a_download_which_resumes_later(
    tmp_path: Path, artifact_server: ArtifactServer, slow: BuiltBundle
) -> None:
    rec = Recorder()
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    worker = UpdateWorker(r)
    worker.start()
    worker.submit(desired_state(DEVICE, 1, slow.model))
    # progress reported and bytes on disk (on a loaded machine the first report can come first)
    wait(lambda: any(x.progress for x in rec.reports) and r.downloader.partial_size(slow.model) > 0)
    t0 = time.monotonic()
    assert worker.stop(timeout=5)
    assert time.monotonic() - t0 < 2
    assert 0 < r.downloader.partial_size(slow.model) < slow.model.size
    # The journal still says DOWNLOADING: the next start goes on without waiting for MQTT.
    assert r.journal.state is UpdateState.DOWNLOADING
    artifact_server.behaviour.throttle_s = 0.0
    again = make_reconciler(tmp_path / "data", artifact_server, Recorder())
    assert again.resume() is Outcome.APPLIED
    assert serve(again)[0] == "linear:slow"
