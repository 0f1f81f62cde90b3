"""The cloud inference endpoint: the fleet server answers the Open Inference Protocol for every
pushed model version (the source ONNX, loaded on first use), so a device's offloaded requests and
any OIP client (here tritonclient) get the same answers as ONNX Runtime in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.serving.offload import CloudClient, Offloader, OffloadSettings
from fleet_server.app import create_app
from fleet_server.config import Settings
from tests.fixtures.asgi_server import serve_app

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "examples" / "digits"

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install edgefleet[server])")
tritonhttp = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")


@pytest.fixture
def app(settings: Settings) -> Any:
    return create_app(settings.model_copy(update={"compile_workers": 1}))


@pytest.fixture
def server(app: Any) -> Iterator[str]:
    with serve_app(app) as url:
        yield url


def _push(url: str, version: str, body: bytes) -> None:
    import httpx

    r = httpx.post(
        f"{url}/api/v1/models",
        data={"name": "digits", "version": version},
        files={"file": ("model.onnx", body)},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text


def _samples() -> np.ndarray:
    with np.load(DIGITS / "heldout.npz") as d:
        return next(v for k, v in d.items() if v.dtype == np.float32)[:4]


def _reference(x: np.ndarray) -> Any:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(DIGITS / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0], sess.get_inputs()[0].name


def test_tritonclient_gets_the_source_models_answers(server: str) -> None:
    _push(server, "1.0", (DIGITS / "digits_cnn.onnx").read_bytes())
    x = _samples()
    want, input_name = _reference(x)
    c = tritonhttp.InferenceServerClient(server.removeprefix("http://"))
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_model_metadata("digits", "1.0")
    assert meta["inputs"][0]["name"] == input_name
    for binary in (True, False):
        inp = tritonhttp.InferInput(input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        res = c.infer("digits", [inp], model_version="1.0")
        out = res.as_numpy(meta["outputs"][0]["name"])
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
        assert res.get_response()["parameters"]["served_by"] == "local"
    with pytest.raises(Exception, match="unknown model"):
        c.get_model_metadata("nope")
    with pytest.raises(Exception, match="unknown model"):
        c.infer("digits", [inp], model_version="9.9")
    c.close()


def test_a_device_offloads_to_the_fleet_servers_endpoint(server: str) -> None:
    _push(server, "1.0", (DIGITS / "digits_cnn.onnx").read_bytes())
    x = _samples()
    want, input_name = _reference(x)
    off = Offloader(OffloadSettings(budget=5.0, url=server))
    assert isinstance(off.client, CloudClient)
    out = asyncio.run(off.infer("digits", "1.0", {input_name: x}))
    np.testing.assert_allclose(next(iter(out.values())), want, rtol=1e-4, atol=1e-5)
    off.close()


def test_the_cloud_endpoint_answers_over_grpc_too(server: str, app: Any) -> None:
    tritongrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
    _push(server, "1.0", (DIGITS / "digits_cnn.onnx").read_bytes())
    x = _samples()
    want, input_name = _reference(x)
    address = app.state.grpc_address
    assert address and address.startswith("127.0.0.1:")
    c = tritongrpc.InferenceServerClient(address)
    assert c.is_server_ready()
    meta = c.get_model_metadata("digits", "1.0", as_json=True)
    inp = tritongrpc.InferInput(input_name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = c.infer("digits", [inp], model_version="1.0")
    np.testing.assert_allclose(res.as_numpy(meta["outputs"][0]["name"]), want, rtol=1e-4, atol=1e-5)
    c.close()
