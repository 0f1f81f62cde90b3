"""The gRPC front-end in the daemon: the setting (flag, environment, default), the ready line's
``grpc_address``, gRPC off, and a gRPC port already taken."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from agent.daemon import Agent, run_agent
from agent.errors import ConfigError
from device_profiles import load_profile
from tests.agent.agent_testkit import ArtifactServer

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

BASE = {"server": "http://fleet:8080", "device_id": "dev-1", "profile": "x86-64-avx2", "data_dir": "/d"}


def test_grpc_port_setting_defaults_on_and_comes_from_flag_or_environment() -> None:
    assert load_config(BASE, {}).grpc_port == 0
    assert load_config(BASE, {"EDGEFLEET_AGENT_GRPC_PORT": "9001"}).grpc_port == 9001
    assert load_config(BASE | {"grpc_port": -1}, {"EDGEFLEET_AGENT_GRPC_PORT": "9001"}).grpc_port == -1
    with pytest.raises(ConfigError, match=r"grpc-port \(command line\): -2 is not a TCP port"):
        load_config(BASE | {"grpc_port": -2}, {})
    with pytest.raises(ConfigError, match=r"EDGEFLEET_AGENT_GRPC_PORT: expected an integer"):
        load_config(BASE, {"EDGEFLEET_AGENT_GRPC_PORT": "grpc"})


def test_the_cli_flag_reaches_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.cli import build_parser

    given = {k: v for k, v in vars(build_parser().parse_args(["--grpc-port", "-1"])).items() if v is not None}
    given.pop("config", None)
    assert load_config(BASE | given, {}).grpc_port == -1


def config(tmp_path: Path, server: str, grpc_port: int) -> AgentConfig:
    data = tmp_path / "data"
    return AgentConfig(
        server=server,
        device_id="dev-9",
        profile="x86-64-avx2",
        data_dir=data,
        grpc_port=grpc_port,
        enroll_token="testkit-token",
    )


def _start(tmp_path: Path, artifact_server: ArtifactServer, grpc_port: int) -> tuple[Agent, dict[str, str]]:
    artifact_server.behaviour.register_status = 400  # keep MQTT out of this test
    out = io.StringIO()
    agent = Agent(config(tmp_path, artifact_server.url, grpc_port), load_profile("x86-64-avx2"), stdout=out)
    agent.start()
    (line,) = out.getvalue().splitlines()
    return agent, json.loads(line)


def test_the_ready_line_names_the_grpc_address_and_it_serves(
    tmp_path: Path, artifact_server: ArtifactServer
) -> None:
    agent, ready = _start(tmp_path, artifact_server, 0)
    try:
        host, _, port = ready["grpc_address"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        client = grpcclient.InferenceServerClient(ready["grpc_address"])
        assert client.is_server_live() and not client.is_server_ready()
        client.close()
    finally:
        agent.stop()
    client = grpcclient.InferenceServerClient(ready["grpc_address"])
    with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
        client.is_server_live(client_timeout=2)
    client.close()


def test_grpc_port_minus_one_turns_grpc_off(tmp_path: Path, artifact_server: ArtifactServer) -> None:
    agent, ready = _start(tmp_path, artifact_server, -1)
    try:
        assert "grpc_address" not in ready and agent.grpc is None
    finally:
        agent.stop()


def test_a_grpc_port_in_use_fails_with_exit_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run_agent(config(tmp_path, "http://127.0.0.1:9", port), load_profile("x86-64-avx2"))
    assert code == 1
    assert "cannot bind the gRPC inference API" in caplog.text and str(port) in caplog.text
