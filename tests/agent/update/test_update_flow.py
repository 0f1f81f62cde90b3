"""Updates end to end on real bundles: download over HTTP, verify, install into the inactive slot,
load with ONNX Runtime, self-test, swap; and every way an update can fail leaves the previous
model serving."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.backoff import Backoff
from agent.contracts.manifest import Manifest
from agent.contracts.state import ErrorCode, ReportedState, UpdateState
from agent.facts import runtime_problems
from agent.serving.errors import NotReady
from agent.serving.models import ModelRegistry
from agent.update.download import Downloader, DownloadLimits
from agent.update.reconciler import Outcome, Reconciler
from tests.agent.agent_testkit import (
    ArtifactServer,
    BuiltBundle,
    Recorder,
    desired_model,
    desired_state,
    make_bundle,
    ort_run,
    tar_bundle,
)
from tests.agent.conftest import SAMPLES

DEVICE = "dev-1"
FULL_UPDATE = ["DOWNLOADING", "VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
X = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)


def make_reconciler(
    data: Path,
    server: ArtifactServer,
    recorder: Callable[[ReportedState], None],
    registry: ModelRegistry | None = None,
    runtimes: Callable[[], Mapping[str, str | None]] = runtime_problems,
) -> Reconciler:
    limits = DownloadLimits(max_attempts=2, backoff=Backoff(initial=0.01, maximum=0.02))
    return Reconciler(
        device_id=DEVICE,
        target="onnx-x86",
        runtime="onnxruntime",
        data_dir=data,
        registry=registry or ModelRegistry(),
        downloader=Downloader(server.url, data / "downloads", limits=limits),
        report=recorder,
        runtimes=runtimes,
    )


def serve(r: Reconciler, x: np.ndarray = X) -> tuple[str, np.ndarray]:
    """(name:version, logits) from the model the registry serves."""
    (model,) = r.registry.models()
    with r.registry.use(model.name) as m:
        return m.ref, m.adapter.infer({"input": x})["logits"]


def expected(bundle: BuiltBundle, x: np.ndarray = X) -> np.ndarray:
    return ort_run(bundle.onnx, {"input": x})["logits"]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def test_install_serve_replace_and_refuse_a_bad_hash(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    v1, v2 = bundles["1"], bundles["2"]
    artifact_server.add(v1.model, v1.tar)
    artifact_server.add(v2.model, v2.tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)

    assert r.apply(desired_state(DEVICE, 1, v1.model)) is Outcome.APPLIED
    assert rec.states(1) == FULL_UPDATE
    assert rec.last.active == "linear:1" and rec.last.error is None and rec.last.generation == 1
    assert r.journal.active is not None and r.journal.active.slot == "a"
    ref, y = serve(r)
    assert ref == "linear:1"
    np.testing.assert_allclose(y, expected(v1), rtol=1e-5)

    assert r.apply(desired_state(DEVICE, 2, v2.model)) is Outcome.APPLIED
    assert rec.states(2) == FULL_UPDATE
    assert (rec.last.active, rec.last.previous) == ("linear:2", "linear:1")
    assert r.journal.active is not None and r.journal.active.slot == "b"
    ref, y = serve(r)
    assert ref == "linear:2"
    np.testing.assert_allclose(y, expected(v2), rtol=1e-5)
    assert not np.allclose(expected(v1), expected(v2))

    # Generation 3 points at v1's bytes but declares another sha256: refused, v2 keeps serving.
    tampered = replace(
        v1.model, version="3", sha256="f" * 64, target_path="linear/3/x.tar", url="/artifacts/linear/3/x.tar"
    )
    artifact_server.add(tampered, v1.tar)
    assert r.apply(desired_state(DEVICE, 3, tampered)) is Outcome.FAILED
    last = rec.last
    assert last.state is UpdateState.IDLE and last.generation == 3
    assert last.error is not None and last.error.code == ErrorCode.HASH_MISMATCH
    assert last.active == "linear:2"
    assert serve(r)[0] == "linear:2"
    assert 3 in r.journal.failed_generations
    assert list((tmp_path / "data" / "downloads").iterdir()) == []

    # The same refused generation delivered again (a retained message after reconnect) is not retried.
    requests = len(artifact_server.requests)
    assert r.apply(desired_state(DEVICE, 3, tampered)) is Outcome.IGNORED
    assert len(artifact_server.requests) == requests


@pytest.mark.slow
def test_a_compiled_int8_bundle_installs_and_serves(
    tmp_path: Path, artifact_server: ArtifactServer, rec: Recorder
) -> None:
    """The real thing: compilers.compile_model's INT8 bundle for x86-64-avx2, tarred, installed."""
    compilers = pytest.importorskip("compilers")
    root = Path(__file__).resolve().parents[3] / "examples" / "digits"
    out = tmp_path / "bundle"
    compilers.compile_model(
        root / "digits_cnn.onnx",
        "x86-64-avx2",
        out,
        compilers.CompileOptions(calibration=root / "calibration.npz"),
    )
    tar = tar_bundle(out, tmp_path / "digits.tar")
    model = desired_model(tar, "digits", "1")
    artifact_server.add(model, tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    assert r.apply(desired_state(DEVICE, 1, model)) is Outcome.APPLIED, rec.last
    heldout = np.load(root / "heldout.npz")
    with r.registry.use("digits") as m:
        assert m.manifest.precision == "int8"
        logits = m.adapter.infer({"input": heldout["x"]})["logits"]
    assert (np.argmax(logits, axis=1) == heldout["y"]).mean() > 0.9


def failing_bundle(tmp_path: Path, v1: BuiltBundle, how: str) -> BuiltBundle:
    """A bundle of v1's model that fails at one step: ``selftest``, ``load`` or ``target``."""
    d = tmp_path / f"bad-{how}"
    if how == "selftest":
        make_bundle(d, v1.onnx, "linear", "9", SAMPLES, expected={"logits": np.zeros((5, 3), np.float32)})
    elif how == "load":
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"this is not an onnx model")
        make_bundle(d, v1.onnx, "linear", "9", SAMPLES)
        shutil.copy(broken, d / "model.onnx")
        m = Manifest.from_json((d / "manifest.json").read_text())
        from agent.contracts.manifest import FileEntry
        from agent.runtimes import sha256_file

        files = tuple(
            FileEntry(f.path, sha256_file(d / f.path), (d / f.path).stat().st_size, f.role) for f in m.files
        )
        (d / "manifest.json").write_text(replace(m, files=files).to_json())
    elif how == "target":
        make_bundle(d, v1.onnx, "linear", "9", SAMPLES, target="tflite-arm")
    tar = tar_bundle(d, tmp_path / f"bad-{how}.tar")
    return BuiltBundle("linear", "9", d, tar, desired_model(tar, "linear", "9"), v1.onnx)


@pytest.mark.parametrize(
    ("how", "code", "failed_in"),
    [
        ("selftest", ErrorCode.SELF_TEST_FAILED, "SELF_TEST"),
        ("load", ErrorCode.LOAD_FAILED, "LOADING"),
        ("target", ErrorCode.INCOMPATIBLE, "INSTALLING"),
    ],
)
def test_a_failing_update_rolls_back_and_keeps_the_old_model(
    tmp_path: Path,
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    rec: Recorder,
    how: str,
    code: ErrorCode,
    failed_in: str,
) -> None:
    v1 = bundles["1"]
    bad = failing_bundle(tmp_path, v1, how)
    artifact_server.add(v1.model, v1.tar)
    artifact_server.add(bad.model, bad.tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    r.apply(desired_state(DEVICE, 1, v1.model))

    assert r.apply(desired_state(DEVICE, 2, bad.model)) is Outcome.FAILED
    states = rec.states(2)
    assert states[-3:] == [failed_in, "ROLLING_BACK", "IDLE"]
    assert rec.last.error.code == code and rec.last.active == "linear:1"
    assert serve(r)[0] == "linear:1"
    assert not (tmp_path / "data" / "slots" / "b").exists()  # the inactive slot was emptied
    assert r.journal.failed_generations == (2,)


def test_a_bundle_for_another_target_is_refused_without_downloading(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    arm = replace(bundles["1"].model, target="tflite-arm")
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    assert r.apply(desired_state(DEVICE, 1, arm)) is Outcome.FAILED
    assert rec.states(1) == ["IDLE"] and rec.last.error.code == ErrorCode.INCOMPATIBLE
    assert artifact_server.requests == []


def test_a_missing_runtime_is_reported(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    r = make_reconciler(
        tmp_path / "data",
        artifact_server,
        rec,
        runtimes=lambda: {"onnxruntime": "onnxruntime is not installed"},
    )
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.FAILED
    assert rec.last.error.code == ErrorCode.RUNTIME_UNAVAILABLE
    assert "onnxruntime is not installed" in rec.last.error.message


def test_empty_models_unloads(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    artifact_server.add(bundles["1"].model, bundles["1"].tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    r.apply(desired_state(DEVICE, 1, bundles["1"].model))
    assert r.registry.ready()
    assert r.apply(desired_state(DEVICE, 2)) is Outcome.APPLIED
    assert not r.registry.ready()
    with pytest.raises(NotReady):
        r.registry.find("linear")
    assert (rec.last.state, rec.last.active, rec.last.previous) == (UpdateState.COMMITTED, None, "linear:1")


def test_the_serving_bundle_is_not_downloaded_again(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    artifact_server.add(bundles["1"].model, bundles["1"].tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    r.apply(desired_state(DEVICE, 1, bundles["1"].model))
    n = len(artifact_server.requests)
    assert r.apply(desired_state(DEVICE, 2, bundles["1"].model)) is Outcome.APPLIED
    assert len(artifact_server.requests) == n
    assert (rec.last.state, rec.last.generation, rec.last.active) == (UpdateState.COMMITTED, 2, "linear:1")


def test_a_network_failure_is_retried_later_not_remembered(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    v1 = bundles["1"]
    artifact_server.add(v1.model, v1.tar)
    artifact_server.behaviour.fail_status, artifact_server.behaviour.fails_left = 503, 2
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    assert r.apply(desired_state(DEVICE, 1, v1.model)) is Outcome.RETRY
    assert rec.states(1) == ["DOWNLOADING", "IDLE"] and rec.last.error.code == ErrorCode.DOWNLOAD_FAILED
    assert r.journal.failed_generations == ()
    assert r.apply(desired_state(DEVICE, 1, v1.model)) is Outcome.APPLIED  # the server is back
    assert serve(r)[0] == "linear:1"


def test_a_restarted_agent_serves_the_active_model_at_once(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    r.apply(desired_state(DEVICE, 1, bundles["1"].model))
    r.apply(desired_state(DEVICE, 2, bundles["2"].model))
    r.registry.close()

    again = make_reconciler(tmp_path / "data", artifact_server, Recorder())
    loaded = again.restore()
    assert loaded is not None and loaded.ref == "linear:2"
    np.testing.assert_allclose(serve(again)[1], expected(bundles["2"]), rtol=1e-5)


def test_a_corrupted_active_slot_falls_back_to_the_previous(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    r.apply(desired_state(DEVICE, 1, bundles["1"].model))
    r.apply(desired_state(DEVICE, 2, bundles["2"].model))
    r.registry.close()
    (tmp_path / "data" / "slots" / "b" / "model.onnx").write_bytes(b"bit rot")

    again_rec = Recorder()
    again = make_reconciler(tmp_path / "data", artifact_server, again_rec)
    loaded = again.restore()
    assert loaded is not None and loaded.ref == "linear:1"
    assert again.journal.active is not None and again.journal.active.slot == "a"
    assert again_rec.last.error.code == ErrorCode.LOAD_FAILED


def test_a_desired_state_already_applied_is_answered_with_the_current_report(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    """A server that lost reports (its broker dropped them) re-sends the desired state; the device
    has nothing to do but says where it stands, so the server learns the outcome."""
    artifact_server.add(bundles["1"].model, bundles["1"].tar)
    r = make_reconciler(tmp_path / "data", artifact_server, rec)
    r.apply(desired_state(DEVICE, 1, bundles["1"].model))
    before = len(rec.reports)
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.IGNORED
    assert len(rec.reports) == before + 1
    assert (rec.last.state, rec.last.generation, rec.last.active) == (UpdateState.COMMITTED, 1, "linear:1")
