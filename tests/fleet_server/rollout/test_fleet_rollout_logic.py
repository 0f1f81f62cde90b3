"""The pure core: build keys, group membership, which deployment a device follows, per-device and
deployment states, desired-state generations, settings parsing. No broker, DB or clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contracts import DesiredModel, ReportedError, ReportedState, UpdateState
from device_profiles import load_profile
from fleet_server.build_settings import build_key
from fleet_server.config import load_settings, parse_broker, parse_store
from fleet_server.errors import ConfigError
from fleet_server.membership import GroupSpec, members, selector_matches
from fleet_server.rollout import (
    LiveDeployment,
    claims,
    device_state,
    needs_write,
    next_desired,
)
from fleet_server.states import DeviceRolloutState as S

REF = "digits:1.0"


def reported(gen: int, state: UpdateState, active: str | None = None, error: tuple[str, str] | None = None):
    return ReportedState(
        "d1", gen, state, active=active, error=None if error is None else ReportedError(*error)
    )


def model(path: str = "digits/1.0/onnx-x86-int8-aaaaaaaa.tar") -> DesiredModel:
    return DesiredModel("digits", "1.0", "onnx-x86", "int8", path, f"/artifacts/{path}", 10, "a" * 64)


# -- build keys -----------------------------------------------------------------------------


def test_build_key_depends_on_precision_for_cpu_targets() -> None:
    a, b = build_key(load_profile("x86-64-avx2")), build_key(load_profile("x86-64-avx512-vnni"))
    assert (a.target, a.precision, a.settings_key) == ("onnx-x86", "int8", "int8")
    assert a == b  # same build: compiled once for both profiles
    pi = build_key(load_profile("raspberry-pi-5"))
    assert (pi.target, pi.settings_key) == ("tflite-arm", "int8")


def test_build_key_for_jetson_names_compute_capability_and_dla() -> None:
    nano = build_key(load_profile("jetson-orin-nano"))
    agx = build_key(load_profile("jetson-agx-orin"))
    assert nano.settings_key == "int8-sm87"
    assert nano.settings == {"precision": "int8", "compute_capability": "8.7", "dla": False}
    assert agx.settings_key.startswith("int8-sm87") and agx.settings["dla"] is True
    assert nano != agx


# -- membership and claims --------------------------------------------------------------------


def test_selector_matching() -> None:
    assert selector_matches({"site": "lab"}, {"site": "lab", "x": "1"})
    assert not selector_matches({"site": "lab"}, {"site": "home"})
    assert not selector_matches({}, {"site": "lab"})  # empty selector matches nothing


def test_members_are_static_plus_selected() -> None:
    g = GroupSpec("g", frozenset({"a", "ghost"}), {"site": "lab"})
    devices = {"a": {}, "b": {"site": "lab"}, "c": {"site": "home"}}
    assert members(g, devices) == ["a", "b"]  # "ghost" is not registered


def test_device_follows_newest_live_deployment_among_its_groups() -> None:
    groups = {
        "lab": GroupSpec("lab", selector={"site": "lab"}),
        "canary": GroupSpec("canary", frozenset({"d1"})),
    }
    devices = {"d1": {"site": "lab"}, "d2": {"site": "lab"}, "d3": {}}
    deps = [LiveDeployment(1, "lab"), LiveDeployment(2, "canary")]
    assert claims(devices, groups, deps) == {"d1": 2, "d2": 1}
    assert claims(devices, groups, [*deps, LiveDeployment(3, "lab")]) == {"d1": 3, "d2": 3}


# -- per-device states ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rs", "want"),
    [
        (None, S.NOTIFIED),
        (reported(1, UpdateState.COMMITTED, "digits:0.9"), S.NOTIFIED),  # older generation
        (reported(2, UpdateState.DOWNLOADING), S.DOWNLOADING),
        (reported(2, UpdateState.VERIFYING), S.DOWNLOADING),
        (reported(2, UpdateState.INSTALLING), S.INSTALLING),
        (reported(2, UpdateState.LOADING), S.INSTALLING),
        (reported(2, UpdateState.SELF_TEST), S.INSTALLING),
        (reported(2, UpdateState.COMMITTED, REF), S.HEALTHY),
        (reported(2, UpdateState.IDLE, REF), S.NOTIFIED),  # active, but the generation not applied
        (reported(3, UpdateState.COMMITTED, REF), S.HEALTHY),
        (reported(2, UpdateState.IDLE, "digits:0.9", ("HASH_MISMATCH", "bad bytes")), S.FAILED),
        (reported(2, UpdateState.ROLLING_BACK, "digits:0.9"), S.FAILED),
        (reported(2, UpdateState.COMMITTED, "other:1"), S.FAILED),
        (reported(2, UpdateState.IDLE), S.NOTIFIED),
    ],
)
def test_device_state_from_reported(rs: ReportedState | None, want: S) -> None:
    state, _err = device_state(rs, 2, REF)
    assert state == want


def test_device_state_pending_until_written_and_error_passed_through() -> None:
    assert device_state(None, None, REF) == (S.PENDING, None)
    state, err = device_state(
        reported(2, UpdateState.IDLE, None, ("SELF_TEST_FAILED", "outputs differ")), 2, REF
    )
    assert state == S.FAILED and err == ReportedError("SELF_TEST_FAILED", "outputs differ")


def test_download_failed_is_retried_so_the_device_is_still_downloading() -> None:
    """The agent retries a DOWNLOAD_FAILED generation (it does not mark it failed): a network blip
    must not turn the device FAILED, but the error stays visible in its row."""
    err = ("DOWNLOAD_FAILED", "download from /artifacts/x failed 5 times: ConnectError")
    for active in (None, "digits:0.9"):
        state, shown = device_state(reported(2, UpdateState.IDLE, active, err), 2, REF)
        assert state == S.DOWNLOADING and shown == ReportedError(*err)
    # every other error for the generation still fails the device
    state, shown = device_state(reported(2, UpdateState.IDLE, None, ("HASH_MISMATCH", "bad")), 2, REF)
    assert state == S.FAILED and shown == ReportedError("HASH_MISMATCH", "bad")


@pytest.mark.parametrize("state", [s for s in UpdateState if s != UpdateState.COMMITTED])
def test_healthy_needs_committed_not_just_the_model_active(state: UpdateState) -> None:
    """docs/api.md: COMMITTED at the deployment's generation with its model active → HEALTHY.
    Reporting the model active in any other state (IDLE after an earlier commit, mid-update) is not
    enough."""
    got, _err = device_state(reported(2, state, REF), 2, REF)
    assert got != S.HEALTHY
    assert device_state(reported(2, UpdateState.COMMITTED, REF), 2, REF) == (S.HEALTHY, None)


def test_already_active_model_reports_committed_and_counts_as_healthy() -> None:
    """Re-desiring the model a device already serves (a new deployment of the same model): the
    agent's state machine records the generation as COMMITTED, which the server counts as
    HEALTHY, so such deployments still succeed under the COMMITTED rule."""
    from agent.update.machine import Event, next_state

    for at_rest in (UpdateState.IDLE, UpdateState.COMMITTED):
        after = next_state(at_rest, Event.ALREADY_ACTIVE)
        assert after == UpdateState.COMMITTED
        assert device_state(reported(3, after, REF), 3, REF) == (S.HEALTHY, None)


# -- desired state --------------------------------------------------------------------------


def test_generation_grows_by_one_and_rewrites_are_skipped() -> None:
    m = model()
    d1 = next_desired("d1", 0, "7", m, issued_at=1.0)
    assert d1.generation == 1 and d1.models == (m,) and d1.deployment_id == "7"
    stored = d1
    assert not needs_write(stored, "7", m)  # same deployment, same bundle: no new generation
    assert needs_write(stored, "8", m)  # a newer deployment
    assert needs_write(stored, "7", model("digits/1.0/onnx-x86-int8-bbbbbbbb.tar"))  # other bundle
    assert needs_write(None, "7", m)
    assert next_desired("d1", d1.generation, "8", m, 2.0).generation == 2


# -- settings -------------------------------------------------------------------------------


def test_settings_from_flags_env_and_defaults(tmp_path: Path) -> None:
    env = {"EDGEFLEET_PORT": "9000", "EDGEFLEET_TOKEN": "t", "EDGEFLEET_DATA_DIR": str(tmp_path)}
    s = load_settings({"port": 0}, env=env)
    assert s.port == 0 and s.token == "t" and s.data_dir == tmp_path  # flag beats env
    assert s.database_url == f"sqlite:///{tmp_path.resolve()}/fleet.db"
    assert s.store_spec.path == tmp_path / "artifacts"
    assert s.broker == "auto" and s.mqtt_protocol == "5" and s.compile_workers == 1


def test_settings_reject_what_cannot_work() -> None:
    with pytest.raises(ConfigError, match="mqtt-protocol"):
        load_settings({"mqtt_protocol": "4"}, env={})
    with pytest.raises(ConfigError, match=r"3\.1\.1 only"):
        load_settings({"broker": "embedded"}, env={})
    with pytest.raises(ConfigError, match="--broker"):
        parse_broker("tcp://x")
    with pytest.raises(ConfigError, match="not a number"):
        load_settings({}, env={"EDGEFLEET_PORT": "eighty"})
    assert parse_broker("mqtt://10.0.0.5:1884").port == 1884
    s3 = parse_store("s3://bucket/some/prefix", Path("/d"))
    assert (s3.kind, s3.bucket, s3.prefix) == ("s3", "bucket", "some/prefix")


# -- bundle tar -----------------------------------------------------------------------------


def test_bundle_tar_is_reproducible_with_manifest_first(tmp_path: Path) -> None:
    import tarfile

    from fleet_server.bundle_tar import bundle_target_path, sha256_of, write_bundle_tar

    src = tmp_path / "bundle"
    (src / "sub").mkdir(parents=True)
    (src / "a_model.onnx").write_bytes(b"model")
    (src / "sub" / "x.bin").write_bytes(b"x")
    (src / "manifest.json").write_text("{}")
    write_bundle_tar(src, tmp_path / "1.tar")
    (src / "a_model.onnx").touch()  # a newer mtime must not change the bytes
    write_bundle_tar(src, tmp_path / "2.tar")
    assert sha256_of(tmp_path / "1.tar") == sha256_of(tmp_path / "2.tar")
    with tarfile.open(tmp_path / "1.tar") as tf:
        assert tf.getnames() == ["manifest.json", "a_model.onnx", "sub/x.bin"]
    sha = sha256_of(tmp_path / "1.tar")
    assert bundle_target_path("m", "1", "onnx-x86", "int8", sha) == f"m/1/onnx-x86-int8-{sha[:8]}.tar"
    (src / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest"):
        write_bundle_tar(src, tmp_path / "3.tar")
