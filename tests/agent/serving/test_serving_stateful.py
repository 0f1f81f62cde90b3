"""A streaming model as PyTorch exports one, compiled and deployed, then called the way an
application calls Triton: a state input with its batch on axis 1 (``h0`` [2, N, 8]), a scalar
input (``gain``) and a state output (``state`` [2, N, 8]).

The compile writes the state's self-test samples one whole tensor per run; the agent's install
runs them before it commits the model (a failing self-test would roll it back); ``tritonclient``
sends the scalar as a tensor of shape ``[]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from compilers import CompileOptions, compile_model
from tests.agent.agent_testkit import (
    committed_agent,
    desired_model,
    ort_run,
    tar_bundle,
)
from tests.compilers.test_recurrent import FEATURES, HIDDEN, STEPS, stream_samples, streaming_gru

pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
import tritonclient.http as httpclient

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-stream-1"


def test_a_streaming_model_installs_self_tests_and_serves_its_state(tmp_path: Path) -> None:
    source = tmp_path / "stream.onnx"
    onnx.save(streaming_gru(), source)
    np.savez(tmp_path / "cal.npz", **stream_samples(24))
    np.savez(tmp_path / "val.npz", **stream_samples(16))
    opts = CompileOptions(
        precision="fp32",
        calibration=tmp_path / "cal.npz",
        validation=tmp_path / "val.npz",
        latency_runs=0,
        samples=3,
        name="stream",
        version="1",
    )
    compile_model(source, "x86-64-avx2", tmp_path / "bundle", opts)
    tar = tar_bundle(tmp_path / "bundle", tmp_path / "stream.tar")
    model = desired_model(tar, "stream", "1")

    with committed_agent(tmp_path, DEVICE, model, tar) as agent:
        assert "self-test passed on 3 samples" in agent.log.read_text()

        rng = np.random.default_rng(21)
        feats = rng.normal(size=(2, STEPS, FEATURES)).astype(np.float32)
        h0 = rng.normal(scale=0.5, size=(2, 2, HIDDEN)).astype(np.float32)
        gain = np.array(0.8, np.float32)
        want = ort_run(source, {"feats": feats, "h0": h0, "gain": gain})
        client = httpclient.InferenceServerClient(agent.url.removeprefix("http://"))
        meta = client.get_model_metadata("stream")
        assert [i["shape"] for i in meta["inputs"]] == [[-1, STEPS, FEATURES], [2, -1, HIDDEN], []]
        inputs = []
        for name, value, datatype in (("feats", feats, "FP32"), ("h0", h0, "FP32"), ("gain", gain, "FP32")):
            tensor = httpclient.InferInput(name, list(value.shape), datatype)
            tensor.set_data_from_numpy(value, binary_data=name != "gain")
            inputs.append(tensor)
        result = client.infer("stream", inputs)
        got_state = result.as_numpy("state")
        assert got_state is not None and got_state.shape == (2, 2, HIDDEN)
        np.testing.assert_allclose(got_state, want["state"], atol=1e-5)
        np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], atol=1e-5)
