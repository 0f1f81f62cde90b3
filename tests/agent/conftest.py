"""Fixtures for the agent tests: bundles built for real, a real HTTP server (Mosquitto:
``mosquitto_broker`` from ``tests.fixtures.mosquitto``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests.agent.agent_testkit import (
    AgentProcess,
    ArtifactServer,
    BuiltBundle,
    Observer,
    desired_model,
    make_bundle,
    make_linear_onnx,
    tar_bundle,
)

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install edgefleet[agent])")
pytest.importorskip(
    "onnx", reason="onnx is not installed (pip install edgefleet[compile]); tests build models with it"
)

SAMPLES = {"input": np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltBundle]:
    """Two versions of a small linear model (different weights) as bundle tars."""
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for version, scale in (("1", 1.0), ("2", 3.0)):
        onnx_path = make_linear_onnx(root / f"linear-{version}.onnx", scale)
        d = make_bundle(root / f"bundle-{version}", onnx_path, "linear", version, SAMPLES)
        tar = tar_bundle(d, root / f"linear-{version}.tar")
        out[version] = BuiltBundle(
            "linear", version, d, tar, desired_model(tar, "linear", version), onnx_path
        )
    return out


@pytest.fixture
def artifact_server() -> Iterator[ArtifactServer]:
    server = ArtifactServer().start()
    yield server
    server.stop()


def mqtt_settings(host: str, port: int) -> dict[str, Any]:
    """The broker settings an enrollment answer gives (plain MQTT 5, a short keepalive)."""
    return {"host": host, "port": port, "protocol": "5", "topic_root": "edgefleet/v1", "keepalive": 5}


@pytest.fixture
def fleet(
    artifact_server: ArtifactServer, mosquitto_broker: Any, bundles: dict[str, BuiltBundle]
) -> ArtifactServer:
    """The HTTP server answers enrollment with the real broker's address and serves the bundles."""
    artifact_server.behaviour.mqtt = mqtt_settings(mosquitto_broker.host, mosquitto_broker.port)
    for b in bundles.values():
        artifact_server.add(b.model, b.tar)
    return artifact_server


@pytest.fixture
def spawn() -> Iterator[Callable[..., AgentProcess]]:
    """Start agent processes; any still running at the end of the test is killed."""
    started: list[AgentProcess] = []

    def start(*args: Any, **kwargs: Any) -> AgentProcess:
        started.append(AgentProcess(*args, **kwargs))
        return started[-1]

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.kill()


@pytest.fixture
def observer(mosquitto_broker: Any) -> Iterator[Observer]:
    obs = Observer(mosquitto_broker.host, mosquitto_broker.port)
    yield obs
    obs.stop()
