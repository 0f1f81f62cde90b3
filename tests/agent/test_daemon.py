"""The daemon wired in-process: the ready line, a refused registration, a port already taken."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import httpx
import pytest

from agent.config import AgentConfig
from agent.daemon import Agent, run_agent
from device_profiles import load_profile
from tests.agent.agent_testkit import ArtifactServer


def config(tmp_path: Path, server: str, port: int = 0) -> AgentConfig:
    """An agent's settings against ``server``; the test artifact server's TUF root when it is one."""
    return AgentConfig(
        server=server,
        device_id="dev-9",
        profile="x86-64-avx2",
        data_dir=tmp_path / "data",
        port=port,
        tuf_root=ArtifactServer.roots.get(server),
        enroll_token="testkit-token",  # the test kit's server signs any CSR
    )


def test_start_prints_one_ready_line_and_serves(tmp_path: Path, artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.register_status = 400  # keep MQTT out of this test
    out = io.StringIO()
    agent = Agent(config(tmp_path, artifact_server.url), load_profile("x86-64-avx2"), stdout=out)
    try:
        url = agent.start()
        (line,) = out.getvalue().splitlines()
        ready = {"event": "ready", "device_id": "dev-9", "inference_url": url}
        assert json.loads(line) == ready | {"grpc_address": agent.grpc.address}  # type: ignore[union-attr]
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        assert agent.stopping.wait(10)  # the refusal stops the agent ...
        assert agent.error is not None and "HTTP 400" in str(agent.error)  # ... and says why
    finally:
        agent.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/health/live")


def test_a_port_in_use_fails_with_exit_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run_agent(config(tmp_path, "http://127.0.0.1:9", port), load_profile("x86-64-avx2"))
    assert code == 1
    assert "cannot start" in caplog.text and str(port) in caplog.text


def test_without_an_identity_or_a_token_the_agent_says_how_to_enroll(
    tmp_path: Path, artifact_server: ArtifactServer
) -> None:
    cfg = config(tmp_path, artifact_server.url).model_copy(update={"enroll_token": None})
    agent = Agent(cfg, load_profile("x86-64-avx2"), stdout=io.StringIO())
    try:
        agent.start()
        assert agent.stopping.wait(10)
        assert agent.error is not None and "--enroll-token" in str(agent.error)
        assert artifact_server.registrations == []  # nothing was sent
    finally:
        agent.stop()


def test_standalone_serves_without_an_identity_and_never_calls_the_fleet(
    tmp_path: Path, artifact_server: ArtifactServer
) -> None:
    cfg = config(tmp_path, artifact_server.url).model_copy(update={"enroll_token": None, "standalone": True})
    agent = Agent(cfg, load_profile("x86-64-avx2"), stdout=io.StringIO())
    try:
        url = agent.start()
        assert not agent.stopping.wait(2)  # no identity, no token, and still running
        assert agent.error is None and agent.mqtt is None
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        assert artifact_server.registrations == []
    finally:
        agent.stop()
