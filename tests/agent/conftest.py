"""Fixtures for the agent tests: bundles built for real, a real HTTP server (Mosquitto:
``mosquitto_broker`` from ``tests.fixtures.mosquitto``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.agent.agent_testkit import (
    ArtifactServer,
    BuiltBundle,
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
