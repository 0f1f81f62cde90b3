"""The Open Inference Protocol v2 against a real agent process, with unchanged tritonclient
clients: HTTP (JSON and binary tensors) and gRPC (raw tensors), each sync and asyncio. Then bad
requests over both transports, which must get the protocol's errors and leave the agent serving.

One agent serves the whole module: Mosquitto, the artifact/registration server and the agent run
for real, and the model arrives as a desired state over MQTT, as in the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.agent.agent_testkit import (
    AgentProcess,
    BuiltBundle,
    committed_agent,
    ort_run,
)
from tests.agent.serving.serving_models import pair_bundle

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from agent.serving.grpc import oip_v2_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-oip-1"
X = np.random.default_rng(12).standard_normal((2, 4)).astype(np.float32)


class Served:
    def __init__(self, agent: AgentProcess, bundle: BuiltBundle) -> None:
        self.agent = agent
        self.bundle = bundle
        self.http = agent.url  # http://127.0.0.1:PORT
        self.hostport = agent.url.removeprefix("http://")
        self.grpc = str(agent.ready["grpc_address"])
        self.want = ort_run(bundle.onnx, {"input": X})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("oip")
    bundle = pair_bundle(root / "bundles")
    with committed_agent(root, DEVICE, bundle.model, bundle.tar) as agent:
        yield Served(agent, bundle)


def test_the_ready_line_names_both_front_ends(served: Served) -> None:
    host, _, port = served.grpc.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0 and served.http.startswith("http://127.0.0.1:")


# -- HTTP -------------------------------------------------------------------------------------


def _http_inputs(mod: Any, binary: bool) -> list[Any]:
    inp = mod.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=binary)
    return [inp]


def _check_http_metadata(meta: dict[str, Any], model: dict[str, Any]) -> None:
    assert meta["name"] == "edgefleet-agent" and "binary_tensor_data" in meta["extensions"]
    assert model["name"] == "pair" and model["versions"] == ["1"] and model["platform"] == "onnxruntime"
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in model["outputs"]] == ["logits", "scaled"]


def test_tritonclient_http_sync(served: Served) -> None:
    c = httpclient.InferenceServerClient(served.hostport)
    try:
        assert c.is_server_live() and c.is_server_ready()
        assert (
            c.is_model_ready("pair") and c.is_model_ready("pair", "1") and not c.is_model_ready("pair", "2")
        )
        _check_http_metadata(c.get_server_metadata(), c.get_model_metadata("pair"))
        for binary in (False, True):  # JSON tensors, then the binary tensor extension both ways
            outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("logits", "scaled")]
            r = c.infer("pair", _http_inputs(httpclient, binary), outputs=outs, request_id=f"h-{binary}")
            np.testing.assert_allclose(r.as_numpy("logits"), served.want["logits"], rtol=1e-6)
            np.testing.assert_allclose(r.as_numpy("scaled"), served.want["scaled"], rtol=1e-6)
            resp = r.get_response()
            assert resp["id"] == f"h-{binary}" and resp["model_version"] == "1"
            assert resp["parameters"]["served_by"] == "local"
        only = c.infer(
            "pair", _http_inputs(httpclient, True), outputs=[httpclient.InferRequestedOutput("scaled")]
        )
        assert [o["name"] for o in only.get_response()["outputs"]] == ["scaled"]
    finally:
        c.close()


def test_tritonclient_http_asyncio(served: Served) -> None:
    async def main() -> None:
        c = httpaio.InferenceServerClient(served.hostport)
        try:
            assert await c.is_server_live() and await c.is_model_ready("pair")
            _check_http_metadata(await c.get_server_metadata(), await c.get_model_metadata("pair"))
            results = await asyncio.gather(
                *(c.infer("pair", _http_inputs(httpaio, i % 2 == 0), request_id=str(i)) for i in range(6))
            )
            for i, r in enumerate(results):
                assert r.get_response()["id"] == str(i)
                assert r.get_response()["parameters"]["served_by"] == "local"
                np.testing.assert_allclose(r.as_numpy("scaled"), served.want["scaled"], rtol=1e-6)
        finally:
            await c.close()

    asyncio.run(main())


def test_the_http_response_names_where_it_ran(served: Served) -> None:
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    r = httpx.post(f"{served.http}/v2/models/pair/infer", json=body)
    assert r.status_code == 200 and r.headers["X-EdgeFleet-Served-By"] == "local"


# -- gRPC -------------------------------------------------------------------------------------


def _grpc_inputs(mod: Any) -> list[Any]:
    inp = mod.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    return [inp]


def _check_grpc_metadata(meta: Any, model: Any) -> None:
    assert meta.name == "edgefleet-agent" and "binary_tensor_data" in meta.extensions
    assert model.name == "pair" and list(model.versions) == ["1"] and model.platform == "onnxruntime"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("input", "FP32", [-1, 4])]
    assert [t.name for t in model.outputs] == ["logits", "scaled"]


def test_tritonclient_grpc_sync(served: Served) -> None:
    c = grpcclient.InferenceServerClient(served.grpc)
    try:
        assert c.is_server_live() and c.is_server_ready()
        assert (
            c.is_model_ready("pair") and c.is_model_ready("pair", "1") and not c.is_model_ready("pair", "2")
        )
        _check_grpc_metadata(c.get_server_metadata(), c.get_model_metadata("pair"))
        r = c.infer("pair", _grpc_inputs(grpcclient), request_id="g-1")
        np.testing.assert_allclose(r.as_numpy("logits"), served.want["logits"], rtol=1e-6)
        np.testing.assert_allclose(r.as_numpy("scaled"), served.want["scaled"], rtol=1e-6)
        resp = r.get_response()
        assert (
            resp.id == "g-1"
            and resp.model_version == "1"
            and resp.parameters["served_by"].string_param == "local"
        )
        only = c.infer("pair", _grpc_inputs(grpcclient), outputs=[grpcclient.InferRequestedOutput("logits")])
        assert [o.name for o in only.get_response().outputs] == ["logits"] and only.as_numpy("scaled") is None
    finally:
        c.close()


def test_tritonclient_grpc_asyncio(served: Served) -> None:
    async def main() -> None:
        c = grpcaio.InferenceServerClient(served.grpc)
        try:
            assert await c.is_server_live() and await c.is_model_ready("pair")
            _check_grpc_metadata(await c.get_server_metadata(), await c.get_model_metadata("pair"))
            results = await asyncio.gather(
                *(c.infer("pair", _grpc_inputs(grpcaio), request_id=str(i)) for i in range(6))
            )
            for i, r in enumerate(results):
                assert r.get_response().id == str(i)
                assert r.get_response().parameters["served_by"].string_param == "local"
                np.testing.assert_allclose(r.as_numpy("logits"), served.want["logits"], rtol=1e-6)
        finally:
            await c.close()

    asyncio.run(main())


# -- bad requests -----------------------------------------------------------------------------


def _json_body(shape: list[int], datatype: str = "FP32", n: int | None = None) -> dict[str, Any]:
    count = n if n is not None else int(np.prod(shape))
    return {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": [0] * count}]}


def _binary_body(declared: int, sent: int) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    ).encode()
    return head + b"\0" * sent, {"Inference-Header-Content-Length": str(len(head))}


def _still_serves(served: Served) -> None:
    assert served.agent.proc.poll() is None
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    assert httpx.post(f"{served.http}/v2/models/pair/infer", json=body).status_code == 200
    c = grpcclient.InferenceServerClient(served.grpc)
    assert c.infer("pair", _grpc_inputs(grpcclient)).as_numpy("logits").shape == (2, 3)
    c.close()


@pytest.mark.parametrize(
    ("path", "kw", "status", "message"),
    [
        ("/v2/models/resnet/infer", {"json": _json_body([2, 4])}, 404, "unknown model 'resnet'"),
        ("/v2/models/pair/versions/9/infer", {"json": _json_body([2, 4])}, 404, "no version '9'"),
        ("/v2/models/pair/infer", {"json": _json_body([2, 5])}, 400, "shape [2, 5] does not fit"),
        ("/v2/models/pair/infer", {"json": _json_body([2, 4], "INT64")}, 400, "datatype int64 given"),
        ("/v2/models/pair/infer", {"json": _json_body([2, 4], n=7)}, 400, "7 values given"),
        (
            "/v2/models/pair/infer",
            dict(zip(("content", "headers"), _binary_body(32, 24), strict=True)),
            400,
            "binary_data_size 32 exceeds",
        ),
        (
            "/v2/models/pair/infer",
            dict(zip(("content", "headers"), _binary_body(28, 28), strict=True)),
            400,
            "28 bytes of binary data; FP32 [2, 4] needs 32",
        ),
        ("/v2/models/pair/infer", {"content": b'{"inputs": [{'}, 400, "request is not JSON"),
        ("/v2/models/pair/infer", {"content": b"\xff\xfe garbage"}, 400, "request is not JSON"),
    ],
)
def test_bad_http_requests_get_the_protocol_error_and_the_agent_serves_on(
    served: Served, path: str, kw: dict[str, Any], status: int, message: str
) -> None:
    r = httpx.post(served.http + path, **kw)
    assert r.status_code == status and message in r.json()["error"], r.text
    _still_serves(served)


def test_an_oversized_http_body_is_413_before_it_is_read(served: Served) -> None:
    """The Content-Length says 300 MiB (over the 64 MiB limit); the agent refuses at once."""
    port = int(served.http.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /v2/models/pair/infer HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {300 << 20}\r\n\r\n".encode()
            + b'{"inputs": ['
        )
        reply = b""
        # Read to the end of the JSON error body; the agent then closes the connection (perhaps
        # with a reset, since the announced body was never sent).
        with contextlib.suppress(ConnectionResetError):
            while b"}" not in reply and (chunk := s.recv(65536)):
                reply += chunk
    text = reply.decode(errors="replace")
    assert text.startswith("HTTP/1.1 413") and '"error"' in text, text
    _still_serves(served)


def test_a_body_larger_than_the_models_inputs_can_need_is_413(served: Served) -> None:
    """The pair model takes [batch, 4] floats: at most 256 rows as JSON (about 96 KiB) is what a
    request can need, so 3,000 rows are refused before the body is parsed, and 200 rows pass."""
    too_many = np.random.default_rng(0).standard_normal((3000, 4)).astype(np.float32)  # ~20 B a value
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [3000, 4], "data": too_many.ravel().tolist()}
        ]
    }
    r = httpx.post(f"{served.http}/v2/models/pair/infer", json=body, timeout=30)
    assert r.status_code == 413 and "request body over" in r.json()["error"], r.text
    ok = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [200, 4], "data": [0.5] * 800}]}
    assert httpx.post(f"{served.http}/v2/models/pair/infer", json=ok, timeout=30).status_code == 200
    _still_serves(served)


def _raw(model: str = "pair", x: np.ndarray = X, datatype: str = "FP32", version: str = "") -> bytes:
    req = pb.ModelInferRequest(model_name=model, model_version=version)
    req.inputs.add(name="input", datatype=datatype, shape=x.shape)
    req.raw_input_contents.append(x.tobytes())
    return req.SerializeToString()


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (_raw("resnet"), grpc.StatusCode.NOT_FOUND, "unknown model 'resnet'"),
        (_raw(version="9"), grpc.StatusCode.NOT_FOUND, "no version '9'"),
        (_raw(x=np.zeros((2, 5), np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "shape [2, 5] does not fit"),
        (
            _raw(x=np.zeros((2, 4), np.int64), datatype="INT64"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "datatype int64 given",
        ),
        (
            _raw(x=np.zeros((2, 4), np.float16), datatype="FP32"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "16 bytes of raw data; FP32 [2, 4] needs 32",
        ),
        (b"\x0a\xff\xff\xff\xff\x0f", grpc.StatusCode.INVALID_ARGUMENT, "not a valid ModelInferRequest"),
        (b"\x2a\x03\x0a\x01\xff", grpc.StatusCode.INVALID_ARGUMENT, "not a valid ModelInferRequest"),
    ],
)
def test_bad_grpc_requests_get_the_matching_code_and_the_agent_serves_on(
    served: Served, payload: bytes, code: grpc.StatusCode, message: str
) -> None:
    with grpc.insecure_channel(served.grpc) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as exc:
            call(payload, timeout=10)
    assert exc.value.code() == code and message in exc.value.details()
    _still_serves(served)


def test_tritonclient_sees_grpc_errors_as_it_would_from_triton(served: Served) -> None:
    c = grpcclient.InferenceServerClient(served.grpc)
    with pytest.raises(InferenceServerException) as exc:
        c.infer("resnet", _grpc_inputs(grpcclient))
    assert exc.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'resnet'" in exc.value.message()
    c.close()
