"""Updates through TUF (agent.trust.TufSource) against a real TUF repository (the fleet server's
TufRepository behind the test HTTP server): what verifies is installed, and each attack is
refused with its code, nothing installed and the previous model still serving."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agent.backoff import Backoff
from agent.contracts.state import ErrorCode, ReportedState
from agent.serving.models import ModelRegistry
from agent.trust import TrustedClock, TufSource, install_root
from agent.update.download import DownloadLimits
from agent.update.reconciler import Outcome, Reconciler
from fleet_server.trust import rotate
from fleet_server.trust.keys import load_online_keys
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

DEVICE = "dev-t"
X = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)


class Wall:
    """A settable system clock (seconds since the epoch)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def make(data: Path, server: ArtifactServer, rec: Recorder, wall: Wall | None = None) -> Reconciler:
    install_root(data, server.root_path)
    limits = DownloadLimits(max_attempts=2, backoff=Backoff(initial=0.01, maximum=0.02))
    clock = TrustedClock(data / "trust" / "clock.json", wall=wall or time.time)
    return Reconciler(
        device_id=DEVICE,
        target="onnx-x86",
        runtime="onnxruntime",
        data_dir=data,
        registry=ModelRegistry(),
        downloader=TufSource(server.url, data, limits=limits, clock=clock),
        report=rec,
    )


def serving(r: Reconciler) -> str | None:
    models = r.registry.models()
    return models[0].ref if models else None


def code(rec: Recorder) -> str | None:
    last: ReportedState = rec.last
    return None if last.error is None else last.error.code


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def installed(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> Reconciler:
    """A device serving v1, installed through TUF; v2 is signed and served too."""
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    r = make(tmp_path / "dev", artifact_server, rec)
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.APPLIED, rec.last
    assert serving(r) == "linear:1"
    return r


def test_a_signed_bundle_installs_from_the_configured_server_only(
    installed: Reconciler, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    # The desired state names a foreign host: the agent still fetches from its own server.
    foreign = replace(bundles["2"].model, url="http://evil.invalid:666/x.tar")
    assert installed.apply(desired_state(DEVICE, 2, foreign)) is Outcome.APPLIED, rec.last
    assert serving(installed) == "linear:2"
    tar_gets = [r["path"] for r in artifact_server.requests if r["path"].endswith(".tar")]
    sha = bundles["2"].model.sha256
    assert any(f"/{sha}." in p for p in tar_gets), tar_gets  # consistent-snapshot name
    assert any(r["path"].startswith("/tuf/") for r in artifact_server.requests)


def test_a_tampered_bundle_is_refused_and_the_old_model_serves(
    installed: Reconciler, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    v2 = bundles["2"]
    data = bytearray(artifact_server.files[v2.model.target_path])
    data[-100] ^= 0xFF
    artifact_server.files[v2.model.target_path] = bytes(data)
    assert installed.apply(desired_state(DEVICE, 2, v2.model)) is Outcome.FAILED
    assert code(rec) == ErrorCode.HASH_MISMATCH
    assert serving(installed) == "linear:1"
    assert installed.journal.active is not None and installed.journal.active.version == "1"


def test_an_unsigned_target_is_unknown(
    installed: Reconciler,
    artifact_server: ArtifactServer,
    tmp_path: Path,
    bundles: dict[str, BuiltBundle],
    rec: Recorder,
) -> None:
    d = make_bundle(tmp_path / "b3", bundles["2"].onnx, "linear", "3", SAMPLES)
    tar = tar_bundle(d, tmp_path / "b3.tar")
    m = desired_model(tar, "linear", "3")
    artifact_server.add(m, tar, sign=False)
    assert installed.apply(desired_state(DEVICE, 2, m)) is Outcome.FAILED
    assert code(rec) == ErrorCode.UNKNOWN_TARGET and serving(installed) == "linear:1"


def test_a_desired_state_that_disagrees_with_the_target_is_refused(
    installed: Reconciler, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    # The signed target is linear:2; a forged desired state calls it another version.
    forged = replace(bundles["2"].model, version="99")
    assert installed.apply(desired_state(DEVICE, 2, forged)) is Outcome.FAILED
    assert code(rec) == ErrorCode.TARGET_MISMATCH and serving(installed) == "linear:1"


def test_a_manifest_that_disagrees_with_its_signed_target_is_refused(
    installed: Reconciler,
    artifact_server: ArtifactServer,
    tmp_path: Path,
    bundles: dict[str, BuiltBundle],
    rec: Recorder,
) -> None:
    # A bundle whose manifest names evil:666 signed in under linear:3's fields.
    d = make_bundle(tmp_path / "evil", bundles["2"].onnx, "evil", "666", SAMPLES)
    tar = tar_bundle(d, tmp_path / "evil.tar")
    m = desired_model(tar, "linear", "3")
    artifact_server.add(m, tar)
    assert installed.apply(desired_state(DEVICE, 2, m)) is Outcome.FAILED
    assert code(rec) == ErrorCode.TARGET_MISMATCH and serving(installed) == "linear:1"


def test_a_target_longer_than_signed_is_length_exceeded(
    installed: Reconciler, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    artifact_server.behaviour.append_bytes = b"\0" * 1_000_000  # endless data, as far as we care
    assert installed.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.FAILED
    assert code(rec) == ErrorCode.LENGTH_EXCEEDED and serving(installed) == "linear:1"


def _swap_meta(server: ArtifactServer, name: str, data: bytes) -> bytes:
    """Replace a metadata file the server serves (as an attacker between device and server)."""
    path = server.tuf_store.root / "tuf" / name
    old = path.read_bytes()
    path.write_bytes(data)
    return old


@pytest.mark.parametrize("role", ["targets", "snapshot", "timestamp"])
def test_metadata_signed_by_an_unknown_key_is_refused(
    role: str,
    installed: Reconciler,
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    rec: Recorder,
) -> None:
    from securesystemslib.signer import CryptoSigner

    repo = artifact_server.tuf
    rogue = dict(repo.keys.signers, **{role: CryptoSigner.generate_ed25519()})
    repo.keys = replace(repo.keys, signers=rogue)
    # A bundle signed in with the rogue key (the other roles signed as usual).
    d = bundles["2"]
    artifact_server.sign("linear/2/rogue.tar", d.tar, "linear", "2", "onnx-x86", "fp32")
    assert installed.apply(desired_state(DEVICE, 2, d.model)) is Outcome.RETRY
    assert code(rec) == ErrorCode.SIGNATURE_INVALID and serving(installed) == "linear:1"
    assert installed.journal.active is not None and installed.journal.active.version == "1"


def test_an_older_signed_timestamp_replayed_is_a_rollback(
    installed: Reconciler, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    old = (artifact_server.tuf_store.root / "tuf" / "timestamp.json").read_bytes()
    artifact_server.tuf.refresh(force=True)  # the device sees a newer timestamp ...
    src = installed.downloader
    assert isinstance(src, TufSource)
    src._updater()  # a refresh: the device now trusts the newer timestamp
    _swap_meta(artifact_server, "timestamp.json", old)  # ... then an older, validly signed one
    assert installed.apply(desired_state(DEVICE, 3, bundles["2"].model)) is Outcome.RETRY
    assert code(rec) == ErrorCode.ROLLBACK_ATTEMPT and serving(installed) == "linear:1"


@pytest.mark.parametrize("role", ["targets", "snapshot"])
def test_mixed_and_matched_snapshot_and_targets_are_refused(
    role: str,
    installed: Reconciler,
    artifact_server: ArtifactServer,
    bundles: dict[str, BuiltBundle],
    rec: Recorder,
) -> None:
    repo = artifact_server.tuf
    md = {"targets": lambda: repo.targets, "snapshot": lambda: repo.snapshot}[role]
    old_version = md().signed.version  # type: ignore[union-attr]
    old = (artifact_server.tuf_store.root / "tuf" / f"{old_version}.{role}.json").read_bytes()
    artifact_server.sign("linear/9/x.tar", bundles["2"].tar, "linear", "9", "onnx-x86", "fp32")
    # Serve the older, validly signed file under the name the newer metadata names.
    _swap_meta(artifact_server, f"{md().signed.version}.{role}.json", old)  # type: ignore[union-attr]
    assert installed.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.RETRY
    assert code(rec) == ErrorCode.ROLLBACK_ATTEMPT and serving(installed) == "linear:1"


def test_expired_timestamp_is_refused_but_the_model_keeps_serving(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    wall = Wall()
    r = make(tmp_path / "dev", artifact_server, rec, wall)
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.APPLIED
    wall.offset = 2 * 86400  # two days on: the one-day timestamp is stale (a frozen repository)
    assert r.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.RETRY
    assert code(rec) == ErrorCode.METADATA_EXPIRED and serving(r) == "linear:1"
    assert r.journal.generation == 2 and 2 not in r.journal.failed_generations
    # Once the repository signs again, the same generation goes through.
    artifact_server.tuf._clock = lambda: datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    artifact_server.tuf.refresh(force=True)
    assert r.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.APPLIED, rec.last
    assert serving(r) == "linear:2"


def test_a_clock_set_back_neither_locks_out_nor_forgets_the_floor(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    wall = Wall()
    data = tmp_path / "dev"
    r = make(data, artifact_server, rec, wall)
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.APPLIED
    floor = json.loads((data / "trust" / "clock.json").read_text())["floor"]
    assert floor >= time.time() - 120  # the timestamp's signing time, by the server's clock
    # A reboot without an RTC: the clock reads 1970. Fresh metadata still verifies.
    wall.offset = -time.time() + 1000
    r2 = make(data, artifact_server, rec, wall)
    r2.restore()
    assert r2.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.APPLIED, rec.last
    src = r2.downloader
    assert isinstance(src, TufSource) and src.clock.behind()
    # A clock set forward makes fresh metadata look expired: nothing installs, v2 serves on,
    # and the floor learns nothing from the wrong clock.
    wall.offset = 30 * 86400
    assert r2.apply(desired_state(DEVICE, 3, bundles["1"].model)) is Outcome.RETRY
    assert code(rec) == ErrorCode.METADATA_EXPIRED and serving(r2) == "linear:2"
    assert json.loads((data / "trust" / "clock.json").read_text())["floor"] < time.time() + 3600
    # The clock put right: the same generation installs.
    wall.offset = 0.0
    assert r2.apply(desired_state(DEVICE, 3, bundles["1"].model)) is Outcome.APPLIED, rec.last
    assert serving(r2) == "linear:1"


def test_the_floor_rejects_a_frozen_timestamp_with_the_clock_back(tmp_path: Path) -> None:
    mono = [0.0]
    wall = [1000.0]
    clock = TrustedClock(tmp_path / "clock.json", wall=lambda: wall[0], monotonic=lambda: mono[0])
    issued = datetime(2026, 12, 1, tzinfo=UTC)
    clock.observe(issued)
    assert clock.now() == issued and clock.behind()
    mono[0] = 3 * 86400.0  # the agent ran three days with its clock stuck behind
    assert clock.now() == issued + timedelta(days=3)
    again = TrustedClock(tmp_path / "clock.json", wall=lambda: wall[0], monotonic=lambda: 0.0)
    assert again.now() >= issued  # a restart keeps the floor
    wall[0] = (issued + timedelta(days=10)).timestamp()
    assert again.now() == issued + timedelta(days=10)  # a right clock wins over the floor


def test_root_and_targets_rotations_reach_a_running_agent(
    installed: Reconciler, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    keys = artifact_server.keys_dir
    rotate(keys, "root")
    rotate(keys, "targets")
    assert artifact_server.tuf.reload_keys(load_online_keys(keys / "server"))
    assert installed.apply(desired_state(DEVICE, 2, bundles["2"].model)) is Outcome.APPLIED, rec.last
    assert serving(installed) == "linear:2"
    history = sorted(p.name for p in (installed.downloader._trust / "metadata" / "root_history").iterdir())  # type: ignore[union-attr]
    assert history == ["1.root.json", "2.root.json", "3.root.json"]


def test_no_trust_root_refuses_installs_retryably(
    tmp_path: Path, artifact_server: ArtifactServer, bundles: dict[str, BuiltBundle], rec: Recorder
) -> None:
    artifact_server.add(bundles["1"].model, bundles["1"].tar)
    data = tmp_path / "dev"
    r = make(data, artifact_server, rec)
    shutil.rmtree(data / "trust")
    assert r.apply(desired_state(DEVICE, 1, bundles["1"].model)) is Outcome.RETRY
    assert code(rec) == ErrorCode.TRUST_ROOT_MISSING and serving(r) is None


def test_a_root_is_written_only_when_none_is_there(tmp_path: Path, artifact_server: ArtifactServer) -> None:
    from agent.trust import write_root

    data = tmp_path / "dev"
    assert install_root(data, artifact_server.root_path)
    mine = (data / "trust" / "root.json").read_bytes()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"signed": {"_type": "root", "version": 9}, "signatures": []}))
    assert not install_root(data, other)  # an enrolled root is never replaced by the flag
    assert (data / "trust" / "root.json").read_bytes() == mine
    with pytest.raises(ValueError, match="not TUF root"):
        write_root(data, b'{"signed": {"_type": "targets"}}', replace=True)
    assert (data / "trust" / "root.json").read_bytes() == mine
