"""A device installs only what it runs: ``edgefleet[agent]`` and ``edgefleet[agent,tflite]`` in
clean virtual environments, from the wheel of the working tree, pull none of the converter's or
the server's libraries, and the agent runs without loading server, compiler or CLI code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.wheel_kit import SERVER_ONLY, CleanVenv, build_wheel

pytestmark = pytest.mark.slow

# Loads what a serving agent loads: the daemon, the HTTP and gRPC front-ends, the update path.
PROBE = """
import json, sys
import agent.daemon, agent.serving.app, agent.serving.grpc, agent.update.reconciler
from agent.contracts.names import RUNTIMES
own = sorted({m.split('.')[0] for m in sys.modules} & {'fleet_server', 'compilers', 'edgectl'})
print(json.dumps({"foreign": own, "runtimes": RUNTIMES.names()}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.parametrize("extras", ["agent", "agent,tflite"])
def test_device_install_pulls_no_server_libraries(wheel: Path, tmp_path: Path, extras: str) -> None:
    env = CleanVenv(tmp_path / "venv", wheel, extras)
    installed = env.distributions()
    assert "edgefleet" in installed and "onnxruntime" in installed and "paho-mqtt" in installed
    assert not installed & SERVER_ONLY, f"[{extras}] pulled {sorted(installed & SERVER_ONLY)}"
    if "tflite" in extras:
        assert "ai-edge-litert" in installed

    probe = env.run("-c", PROBE)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["foreign"] == [], f"the agent imported {seen['foreign']}"
    assert "onnxruntime" in seen["runtimes"]

    version = env.run(str(env.script("edge-agent")), "--version")
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    # The server's entry point is in the wheel too; without its extra it says what to install.
    assert env.run(str(env.script("fleet-server")), "--help").returncode == 0
    server = env.run(str(env.script("fleet-server")), "--data-dir", str(tmp_path / "server"), timeout=60)
    assert server.returncode == 2, (server.returncode, server.stderr[-2000:])
    assert "pip install 'edgefleet[server]'" in server.stderr and "Traceback" not in server.stderr
