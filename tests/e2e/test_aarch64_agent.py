"""The ARM agent on real aarch64 binaries: ``edge-agent`` from the working tree's wheel, installed
in an arm64 Debian root with aarch64 wheels of its runtimes, runs as an emulated aarch64 process
(qemu-user) against the host's Mosquitto and fleet server on loopback.

Two devices take part in one rollout of a TFLite INT8 bundle compiled on the host: one on
ai-edge-litert with numpy 2 (today's boards), one on tflite-runtime 2.14 with numpy < 2 (older
ones). Each must enroll, receive, verify and install the bundle, pass its self-test, answer
``tritonclient`` with FP32's top-1 and report, and say ``aarch64`` in its facts.

The root is built once by ``deploy/arm64-root.sh`` and cached (``~/.cache/edgefleet/arm64-root``);
a warm run only reinstalls the edgefleet wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgectl.local.launcher import Launched, start_agent, trust_root
from tests.e2e.e2e_kit import DIGITS, ROOT, api, edgectl, enroll_token, fp32_top1, ok, triton_top1
from tests.polling import wait_until
from tests.wheel_kit import SERVER_ONLY, build_wheel

# On a fresh machine the module fixture first builds the arm64 root (debootstrap and aarch64
# wheels under qemu: about 20 minutes), past the suite's 600 s per-test limit.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.arm64, pytest.mark.timeout(3000)]

ARM_ROOT = Path(os.environ.get("EDGEFLEET_ARM64_ROOT", Path.home() / ".cache" / "edgefleet" / "arm64-root"))
# The two device environments deploy/arm64-root.sh makes, and the backend each must serve with.
VENVS = {"litert": "ai-edge-litert", "tflrt": "tflite-runtime"}
# What each environment installs edgefleet with (tflite-runtime has no extra: it is the old
# boards' fallback, put there beside edgefleet[agent]).
VENV_EXTRAS = {"litert": "agent,tflite", "tflrt": "agent"}
MIN_AGREEMENT = 0.97
SAMPLES = 200  # emulated INT8 inference is slow; 200 held-out digits are enough for the check


@dataclass
class Arm64Root:
    path: Path

    def inside(self, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.path), "/usr/bin/env", "-i", *self.env(), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @staticmethod
    def env() -> list[str]:
        return [
            "HOME=/root",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "PYTHONUNBUFFERED=1",
            "PIP_DISABLE_PIP_VERSION_CHECK=1",
            "SSL_CERT_FILE=/usr/local/share/host-ca/ca.crt",
        ]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the aarch64 tier needs root (chroot, binfmt_misc)"
    for tool, pkg in (("debootstrap", "debootstrap"), ("qemu-aarch64-static", "qemu-user-static")):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install -y {pkg} (bash deploy/setup.sh --dev does)"
    return None


@pytest.fixture(scope="module")
def arm64_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arm64Root]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    built = subprocess.run(
        ["bash", str(ROOT / "deploy" / "arm64-root.sh"), "--keep-mounted", str(ARM_ROOT)],
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert built.returncode == 0, f"arm64 root:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    root = Arm64Root(ARM_ROOT)
    try:
        wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
        shutil.copy(wheel, ARM_ROOT / "tmp" / wheel.name)
        for name, extras in VENV_EXTRAS.items():
            # As a device would install it; the dependencies are already there (aarch64 wheels
            # from deploy/arm64-root.sh), so this only checks them and replaces edgefleet.
            res = root.inside(
                f"/opt/{name}/bin/pip",
                "install",
                "-q",
                "--only-binary=:all:",
                "--force-reinstall",
                "--no-deps",
                f"/tmp/{wheel.name}",
            )
            assert res.returncode == 0, res.stderr[-3000:]
            res = root.inside(
                f"/opt/{name}/bin/pip",
                "install",
                "-q",
                "--only-binary=:all:",
                f"edgefleet[{extras}] @ file:///tmp/{wheel.name}",
            )
            assert res.returncode == 0, res.stderr[-3000:]
            listed = root.inside(f"/opt/{name}/bin/pip", "list", "--format", "json")
            installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
            assert not installed & SERVER_ONLY, f"/opt/{name} holds {sorted(installed & SERVER_ONLY)}"
        yield root
    finally:
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "arm64-root.sh"), "--umount", str(ARM_ROOT)], check=False
        )


def start_arm_agent(
    root: Arm64Root, venv: str, server_url: str, device_id: str, log_dir: Path, tuf_root: Path
) -> Launched:
    """``edge-agent`` from ``/opt/<venv>`` inside the root, as an emulated aarch64 process,
    trusting the fleet's TUF root (copied into the root's file system)."""
    data_dir = f"/var/lib/edgefleet-test/{device_id}"
    shutil.rmtree(root.path / data_dir.lstrip("/"), ignore_errors=True)
    inside_root = f"/var/lib/edgefleet-test/{device_id}.root.json"
    (root.path / inside_root.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tuf_root, root.path / inside_root.lstrip("/"))
    # It enrolls (its key made inside the root, its CSR signed by the fleet CA); `env -i` keeps the
    # host's environment out, so the token goes on the env command line.
    token = f"EDGEFLEET_AGENT_ENROLL_TOKEN={enroll_token(server_url)}"
    command = [
        "chroot",
        str(root.path),
        "/usr/bin/env",
        "-i",
        *root.env(),
        token,
        f"/opt/{venv}/bin/edge-agent",
    ]
    # Imports and the runtime probe are slow under emulation: give it minutes to come up.
    agent = start_agent(
        server_url,
        device_id,
        "raspberry-pi-5",
        Path(data_dir),
        labels={"fleet": "arm64"},
        log_dir=log_dir,
        timeout=600,
        command=command,
        extra=["--grpc-port", "-1"],
        tuf_root=Path(inside_root),
    )
    return agent


def test_aarch64_agents_install_and_serve_a_tflite_bundle(
    arm64_root: Arm64Root, make_fleet: Any, tflite_toolchain: None, tmp_path: Path
) -> None:
    # Both environments really are aarch64 with the backend they are meant to have.
    for venv, dist in VENVS.items():
        probe = arm64_root.inside(
            f"/opt/{venv}/bin/python",
            "-c",
            "import json, platform, numpy; from agent.runtimes.litert import _backend;"
            "print(json.dumps([platform.machine(), numpy.__version__, _backend()[1]]))",
        )
        assert probe.returncode == 0, probe.stderr[-2000:]
        machine, numpy_version, backend = json.loads(probe.stdout.strip().splitlines()[-1])
        assert machine == "aarch64" and backend == dist, (venv, machine, backend)
        assert (int(numpy_version.split(".")[0]) < 2) == (venv == "tflrt"), (venv, numpy_version)

    fleet = make_fleet()
    url = fleet.url
    suffix = uuid.uuid4().hex[:6]
    devices = {f"arm-{venv}-{suffix}": venv for venv in VENVS}
    agents = {}
    try:
        for device_id, venv in devices.items():
            agents[device_id] = start_arm_agent(
                arm64_root, venv, url, device_id, tmp_path / "logs", trust_root(fleet.keys_dir)
            )
        for device_id in devices:
            # The ready line comes before registration; the device appears once it registered.
            wait_until(
                lambda d=device_id: any(x["device_id"] == d for x in api(url, "/api/v1/devices")),
                timeout=120,
                what=f"{device_id} to register",
            )
            facts = api(url, f"/api/v1/devices/{device_id}")["facts"]
            assert facts["arch"] == "aarch64", facts
            assert facts["runtimes"]["litert"], facts

        held = np.load(DIGITS / "heldout.npz")
        x = held["x"][:SAMPLES]
        ref = fp32_top1(x)
        ok(
            edgectl(
                url,
                "models",
                "push",
                str(DIGITS / "digits_cnn.onnx"),
                "--name",
                "digits",
                "--version",
                "1",
                "--calibration",
                str(DIGITS / "calibration.npz"),
                "--validation",
                str(DIGITS / "heldout.npz"),
            )
        )
        ok(edgectl(url, "groups", "create", "arm", "--selector", "fleet=arm64"))
        res = edgectl(
            url,
            "-o",
            "json",
            "deploy",
            "digits:1",
            "--group",
            "arm",
            "--wait",
            "--timeout",
            "1500",
            "--interval",
            "1",
            timeout=1800,
        )
        dep = json.loads(res.stdout)
        assert res.returncode == 0 and dep["state"] == "SUCCEEDED", (dep, res.stderr[-2000:])
        assert {c["target"] for c in dep["compile"]} == {"tflite-arm"}
        assert {d["device_id"]: d["state"] for d in dep["devices"]} == dict.fromkeys(devices, "HEALTHY")

        for device_id in devices:
            device = api(url, f"/api/v1/devices/{device_id}")
            assert device["active"] == "digits:1", device
            assert device["reported"]["state"] == "COMMITTED", device["reported"]
            pred, served = triton_top1(str(agents[device_id].ready["inference_url"]), "digits", x)
            agreement = float((pred == ref).mean())
            assert served == "1"
            assert agreement >= MIN_AGREEMENT, f"{device_id}: top-1 agreement with FP32 {agreement:.3f}"
    except BaseException:
        print(fleet.logs())
        for a in agents.values():
            print(a.log_tail(40))
        raise
    finally:
        for a in agents.values():
            a.stop(timeout=30)
