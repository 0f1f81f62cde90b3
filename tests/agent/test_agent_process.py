"""The agent as a real process: ready line, registration, MQTT, ``kill -9`` mid-update and a
restart that resumes, SIGTERM that says offline. Mosquitto, the HTTP server and the agent all
run for real."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agent.contracts.topics import device_topic
from agent.update.slots import SlotStore
from tests.agent.agent_testkit import (
    AgentProcess,
    ArtifactServer,
    BuiltBundle,
    Observer,
    desired_model,
    desired_state,
    make_bundle,
    ort_run,
    tar_bundle,
)
from tests.agent.conftest import SAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-box-1"
X = np.random.default_rng(11).standard_normal((2, 4)).astype(np.float32)


@pytest.fixture
def slow_bundle(tmp_path: Path, bundles: dict[str, BuiltBundle]) -> BuiltBundle:
    """v2's model as version 3 with 1.5 MB of padding, to be downloaded slowly."""
    d = make_bundle(tmp_path / "slow", bundles["2"].onnx, "linear", "3", SAMPLES, extra_bytes=1_500_000)
    tar = tar_bundle(d, tmp_path / "slow.tar")
    return BuiltBundle("linear", "3", d, tar, desired_model(tar, "linear", "3"), bundles["2"].onnx)


def infer(url: str) -> tuple[str, np.ndarray]:
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    r = httpx.post(f"{url}/v2/models/linear/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_version"], np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)


def reported(o: Observer, gen: int, state: str) -> list[dict[str, Any]]:
    return [r for r in o.payloads("reported") if r["generation"] == gen and r["state"] == state]


def test_ready_line_registration_and_clean_stop(
    tmp_path: Path, fleet: ArtifactServer, observer: Observer, spawn: Callable[..., AgentProcess]
) -> None:
    agent = spawn(tmp_path / "data", fleet.url, DEVICE, "--label", "site=lab", "--label", "rack=3")
    try:
        ready = agent.wait_ready()
        assert ready["event"] == "ready" and ready["device_id"] == DEVICE
        assert ready["inference_url"].startswith("http://127.0.0.1:")
        assert httpx.get(f"{agent.url}/v2/health/live").status_code == 200
        assert httpx.get(f"{agent.url}/v2/health/ready").status_code == 503  # nothing installed yet
        observer.wait_for(lambda o: [s for s in o.payloads("status") if s["online"]])
        (reg,) = fleet.registrations
        assert reg["device_id"] == DEVICE and reg["profile"] == "x86-64-avx2"
        assert reg["labels"] == {"site": "lab", "rack": "3"}
        facts = reg["facts"]
        assert facts["runtimes"]["onnxruntime"] and facts["inference_url"] == agent.url
        assert facts["cpu_count"] >= 1 and facts["arch"] and facts["agent_version"]
    finally:
        assert agent.terminate() == 0
    observer.wait_for(lambda o: [s for s in o.payloads("status") if not s["online"]])
    assert "Traceback" not in agent.log.read_text()
    # The orderly stop is on record for the next start (agent.update.clean_stop).
    # No update ran here, so the journal was never written: its count is 0.
    journal = tmp_path / "data" / "journal.json"
    writes = json.loads(journal.read_text())["writes"] if journal.exists() else 0
    assert (tmp_path / "data" / "clean-stop").read_text() == str(writes)


def test_kill_9_while_downloading_then_restart_resumes_and_serves(
    tmp_path: Path,
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    slow_bundle: BuiltBundle,
    spawn: Callable[..., AgentProcess],
) -> None:
    data = tmp_path / "data"
    desired = device_topic(DEVICE, "desired")
    first = spawn(data, fleet.url, DEVICE)
    first.wait_ready()
    observer.publish(desired, desired_state(DEVICE, 1, bundles["1"].model).to_json())
    observer.wait_for(lambda o: reported(o, 1, "COMMITTED"))
    assert infer(first.url)[0] == "1"

    fleet.add(slow_bundle.model, slow_bundle.tar)
    fleet.behaviour.chunk, fleet.behaviour.throttle_s = 32 << 10, 0.05
    observer.publish(desired, desired_state(DEVICE, 2, slow_bundle.model).to_json())
    observer.wait_for(
        lambda o: [
            r for r in reported(o, 2, "DOWNLOADING") if (r["progress"] or {}).get("bytes", 0) > 100_000
        ]
    )
    first.kill()
    # The broker saw the connection drop: the last will says offline.
    observer.wait_for(lambda o: [s for s in o.payloads("status") if not s["online"]])
    part = data / "downloads" / "partial" / f"{slow_bundle.model.sha256}.part"  # TufSource keeps parts there
    assert 0 < part.stat().st_size < slow_bundle.model.size

    fleet.behaviour.throttle_s = 0.0
    second = spawn(data, fleet.url, DEVICE)
    try:
        second.wait_ready()
        # Serving the good model at once, while the update resumes.
        assert httpx.get(f"{second.url}/v2/health/ready").status_code == 200
        observer.wait_for(lambda o: reported(o, 2, "COMMITTED"), timeout=60)
        version, y = infer(second.url)
        assert version == "3"
        np.testing.assert_allclose(y, ort_run(slow_bundle.onnx, {"input": X})["logits"], rtol=1e-5)
        # The TUF consistent-snapshot name carries the sha256.
        ranges = [r["range"] for r in fleet.requests if slow_bundle.model.sha256 in r["path"]]
        assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    finally:
        assert second.terminate() == 0


def test_killed_while_installing_a_restarted_agent_finishes_the_update(
    tmp_path: Path,
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    monkeypatch: pytest.MonkeyPatch,
    spawn: Callable[..., AgentProcess],
) -> None:
    """The data directory is left exactly as a kill -9 during INSTALLING leaves it (the journal
    says INSTALLING, the inactive slot is half written), then the real agent starts on it."""
    from tests.agent.agent_testkit import Recorder
    from tests.agent.update.test_update_flow import make_reconciler

    class Crash(BaseException):
        pass

    data = tmp_path / "data"
    r = make_reconciler(data, fleet, Recorder())
    r.device_id = DEVICE
    r.apply(desired_state(DEVICE, 1, bundles["1"].model))

    def half_install(self: SlotStore, _tar: Path, slot: str) -> None:
        self.path(slot).mkdir(parents=True, exist_ok=True)
        (self.path(slot) / "model.onnx").write_bytes(b"half")
        raise Crash()

    with monkeypatch.context() as m:
        m.setattr(SlotStore, "install", half_install)
        with pytest.raises(Crash):
            r.apply(desired_state(DEVICE, 2, bundles["2"].model))
    r.registry.close()
    assert r.journal.state.value == "INSTALLING"

    agent = spawn(data, fleet.url, DEVICE)
    try:
        agent.wait_ready()
        observer.wait_for(lambda o: reported(o, 2, "COMMITTED"), timeout=60)
        assert infer(agent.url)[0] == "2"
    finally:
        assert agent.terminate() == 0


def test_kill_9_while_loading_then_restart_resumes_the_update(
    tmp_path: Path,
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
) -> None:
    """A power cut during a long load (a TensorRT engine build) is no sign against the model: the
    restarted agent installs it again from the verified download and says it resumed."""
    import json as json_module

    data = tmp_path / "data"
    hold = tmp_path / "hold-load"
    desired = device_topic(DEVICE, "desired")
    first = spawn(
        data,
        fleet.url,
        DEVICE,
        module="tests.agent.held_load_agent",
        env={"EDGEFLEET_TEST_HOLD_LOAD": str(hold)},
    )
    first.wait_ready()
    observer.publish(desired, desired_state(DEVICE, 1, bundles["1"].model).to_json())
    observer.wait_for(lambda o: reported(o, 1, "COMMITTED"))

    hold.write_text("2")  # the load of version 2 now waits
    observer.publish(desired, desired_state(DEVICE, 2, bundles["2"].model).to_json())
    reached = tmp_path / "hold-load.reached"
    observer.wait_for(lambda o: reached.exists(), timeout=60)
    assert json_module.loads((data / "journal.json").read_text())["state"] == "LOADING"
    first.kill()
    hold.unlink()

    second = spawn(data, fleet.url, DEVICE)
    try:
        second.wait_ready()
        done = observer.wait_for(lambda o: reported(o, 2, "COMMITTED"), timeout=60)[-1]
        assert done["error"] is None
        assert done["recovery"] == "resumed after a crash at LOADING (1 of 2)"
        assert not reported(observer, 2, "ROLLING_BACK")
        assert infer(second.url)[0] == "2"
    finally:
        assert second.terminate() == 0


def test_bad_settings_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "agent", "--server", "http://127.0.0.1:1", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*base, "--device-id", "d1", "--profile", "no-such-board"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown profile 'no-such-board'" in done.stderr and "x86-64-avx2" in done.stderr
    done = subprocess.run(
        [*base, "--device-id", "bad/id", "--profile", "x86-64-avx2"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "device id 'bad/id' is not valid" in done.stderr
    assert done.stdout == ""
