"""The inference API, driven by tritonclient.http (Open Inference Protocol v2, binary extension)."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from agent.contracts.manifest import Manifest
from agent.runtimes import verify_bundle_dir
from agent.runtimes.base import RuntimeAdapter
from agent.runtimes.registry import load_bundle
from agent.serving import InferenceServer, InferenceService, LoadedModel, ModelRegistry, create_app
from tests.agent.agent_testkit import BuiltBundle, ort_run

pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

X = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)


def loaded(bundle: BuiltBundle) -> LoadedModel:
    manifest = verify_bundle_dir(bundle.dir)
    return LoadedModel(bundle.name, bundle.version, load_bundle(bundle.dir, manifest), manifest)


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture
def server(registry: ModelRegistry) -> Iterator[InferenceServer]:
    s = InferenceServer(create_app(InferenceService(registry)), "127.0.0.1", 0)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(server: InferenceServer) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield c
    c.close()


def test_port_zero_picks_a_free_port(server: InferenceServer) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"


def test_health_and_readiness_follow_the_loaded_model(
    server: InferenceServer,
    registry: ModelRegistry,
    client: httpclient.InferenceServerClient,
    bundles: dict[str, BuiltBundle],
) -> None:
    assert client.is_server_live()
    assert not client.is_server_ready()
    r = httpx.get(f"{server.url}/v2/health/ready")
    assert r.status_code == 503 and "no model" in r.json()["error"]
    r = httpx.post(f"{server.url}/v2/models/linear/infer", json={"inputs": []})
    assert r.status_code == 503

    registry.swap("default", loaded(bundles["1"]))
    assert client.is_server_ready()
    assert client.is_model_ready("linear")
    assert client.is_model_ready("linear", "1")
    assert not client.is_model_ready("linear", "7")
    assert not client.is_model_ready("other")


def test_metadata(
    registry: ModelRegistry, client: httpclient.InferenceServerClient, bundles: dict[str, BuiltBundle]
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    meta = client.get_server_metadata()
    assert meta["name"] == "edgefleet-agent" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("linear")
    assert model["name"] == "linear" and model["versions"] == ["1"] and model["platform"] == "onnxruntime"
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert model["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.get_model_metadata("linear", "1")["versions"] == ["1"]
    with pytest.raises(InferenceServerException, match="no version '2'"):
        client.get_model_metadata("linear", "2")


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_with_and_without_binary_data(
    registry: ModelRegistry,
    client: httpclient.InferenceServerClient,
    bundles: dict[str, BuiltBundle],
    binary_in: bool,
    binary_out: bool,
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    inp = httpclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("logits", binary_data=binary_out)
    result = client.infer("linear", [inp], outputs=[out], request_id="req-42")
    np.testing.assert_allclose(
        result.as_numpy("logits"), ort_run(bundles["1"].onnx, {"input": X})["logits"], rtol=1e-5
    )
    response = result.get_response()
    assert (
        response["id"] == "req-42" and response["model_name"] == "linear" and response["model_version"] == "1"
    )


def test_infer_without_outputs_returns_all_in_binary(
    registry: ModelRegistry, client: httpclient.InferenceServerClient, bundles: dict[str, BuiltBundle]
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    inp = httpclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("linear", [inp], model_version="1")
    assert result.as_numpy("logits").shape == (2, 3)
    assert result.get_output("logits")["parameters"]["binary_data_size"] == 2 * 3 * 4


def test_plain_json_with_nested_data(
    server: InferenceServer, registry: ModelRegistry, bundles: dict[str, BuiltBundle]
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    body = {"id": "7", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.tolist()}]}
    r = httpx.post(f"{server.url}/v2/models/linear/infer", json=body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "logits" and out["datatype"] == "FP32" and out["shape"] == [2, 3]
    np.testing.assert_allclose(
        np.array(out["data"]).reshape(2, 3), ort_run(bundles["1"].onnx, {"input": X})["logits"], rtol=1e-5
    )
    assert r.json()["id"] == "7"


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (
            {"name": "input", "shape": [2, 5], "datatype": "FP32", "data": [0.0] * 10},
            "input 'input': shape [2, 5]",
        ),
        (
            {"name": "input", "shape": [2, 4], "datatype": "INT64", "data": [0] * 8},
            "input 'input': datatype int64",
        ),
        (
            {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [0.0] * 7},
            "input 'input': 7 values",
        ),
        (
            {"name": "input", "shape": [2, 4], "datatype": "STRING", "data": []},
            "input 'input': datatype 'STRING'",
        ),
        (
            {"name": "pixels", "shape": [2, 4], "datatype": "FP32", "data": [0.0] * 8},
            "unknown input 'pixels'",
        ),
    ],
)
def test_bad_inputs_are_400_naming_the_tensor(
    server: InferenceServer,
    registry: ModelRegistry,
    bundles: dict[str, BuiltBundle],
    tensor: dict,
    message: str,
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    r = httpx.post(f"{server.url}/v2/models/linear/infer", json={"inputs": [tensor]})
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_missing_input_unknown_output_and_bad_binary_are_400(
    server: InferenceServer, registry: ModelRegistry, bundles: dict[str, BuiltBundle]
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    url = f"{server.url}/v2/models/linear/infer"
    assert "input 'input' is missing" in httpx.post(url, json={"inputs": []}).json()["error"]
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}],
        "outputs": [{"name": "probs"}],
    }
    assert "unknown output 'probs'" in httpx.post(url, json=body).json()["error"]
    head = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
            ]
        }
    ).encode()
    r = httpx.post(url, content=head + b"\0" * 8, headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "input 'input'" in r.json()["error"]
    assert httpx.post(url, content=b"{nope").status_code == 400


def test_unknown_model_is_404(
    server: InferenceServer,
    registry: ModelRegistry,
    client: httpclient.InferenceServerClient,
    bundles: dict[str, BuiltBundle],
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    inp = httpclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as exc:
        client.infer("resnet", [inp])
    assert exc.value.status() == "404" and "unknown model 'resnet'" in exc.value.message()
    r = httpx.post(f"{server.url}/v2/models/linear/versions/9/infer", json={"inputs": []})
    assert r.status_code == 404 and "error" in r.json()


def test_metrics_count_inferences(
    server: InferenceServer,
    registry: ModelRegistry,
    client: httpclient.InferenceServerClient,
    bundles: dict[str, BuiltBundle],
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    inp = httpclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    for _ in range(3):
        client.infer("linear", [inp])
    httpx.post(f"{server.url}/v2/models/nope/infer", json={"inputs": []})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'edgefleet_agent_inference_seconds_count{model="linear",version="1"} 3.0' in text
    assert 'edgefleet_agent_inference_requests_total{model="linear",outcome="ok"} 3.0' in text
    assert 'edgefleet_agent_inference_requests_total{model="_unknown",outcome="not_found"} 1.0' in text


class CountingAdapter(RuntimeAdapter):
    """Wraps a real adapter; fails loudly if used after close."""

    name = "counting"

    def __init__(self, inner: RuntimeAdapter) -> None:
        super().__init__(inner.bundle_dir, inner.manifest)
        self.inner = inner
        self.closed = False
        self.used_after_close = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def version(cls) -> str | None:
        return "0"

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> RuntimeAdapter:
        raise NotImplementedError("wrapper only")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.closed:
            self.used_after_close += 1
        return self.inner.infer(inputs)

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def test_swaps_under_load_never_fail_a_request_nor_use_a_closed_model(
    registry: ModelRegistry, server: InferenceServer, bundles: dict[str, BuiltBundle]
) -> None:
    def model(version: str) -> LoadedModel:
        m = loaded(bundles[version])
        m.adapter = CountingAdapter(m.adapter)
        return m

    registry.swap("default", model("1"))
    expected = {v: ort_run(bundles[v].onnx, {"input": X})["logits"] for v in ("1", "2")}
    errors: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                body = {
                    "inputs": [
                        {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}
                    ]
                }
                r = c.post(f"{server.url}/v2/models/linear/infer", json=body)
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 3)
                version = r.json()["model_version"]
                seen.add(version)
                if not np.allclose(got, expected[version], rtol=1e-5):
                    errors.append(f"version {version} answered with another model's output")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    retired: list[LoadedModel] = []
    for i in range(20):
        old = registry.swap("default", model("2" if i % 2 == 0 else "1"))
        assert old is not None
        retired.append(old)
        threading.Event().wait(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert seen == {"1", "2"}
    for old in retired:
        assert isinstance(old.adapter, CountingAdapter)
        assert old.adapter.closed and old.adapter.used_after_close == 0


# Below what the linear model's inputs can need (256 rows x 4 values as JSON, ~96 KiB: see
# agent.serving.limits), so the server-wide limit is the one these tests reach.
SMALL_LIMIT = 64 << 10


@pytest.fixture
def small_server(registry: ModelRegistry) -> Iterator[InferenceServer]:
    """A server whose body limit is 64 KiB, so going over it is cheap."""
    s = InferenceServer(create_app(InferenceService(registry), max_body_bytes=SMALL_LIMIT), "127.0.0.1", 0)
    s.start()
    yield s
    s.stop()


def _infer_body(n: int = 2) -> bytes:
    x = np.ones((n, 4), np.float32)
    return json.dumps(
        {"inputs": [{"name": "input", "shape": [n, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()


def test_a_chunked_body_over_the_limit_is_413(
    small_server: InferenceServer, registry: ModelRegistry, bundles: dict[str, BuiltBundle]
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    url = f"{small_server.url}/v2/models/linear/infer"
    sent = 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        nonlocal sent
        while sent <= SMALL_LIMIT:
            sent += 16 << 10
            yield b" " * (16 << 10)

    r = httpx.post(url, content=chunks())
    assert r.status_code == 413 and f"over {SMALL_LIMIT} bytes" in r.json()["error"]
    assert "content-length" not in r.request.headers and sent > SMALL_LIMIT
    # Still serving, and a body within the limit is answered.
    assert httpx.get(f"{small_server.url}/v2/health/ready").status_code == 200
    assert httpx.post(url, content=_infer_body()).status_code == 200
    text = httpx.get(f"{small_server.url}/metrics").text
    assert 'edgefleet_agent_inference_requests_total{model="linear",outcome="too_large"} 1.0' in text


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_a_compression_bomb_is_413_before_it_is_inflated(
    small_server: InferenceServer,
    registry: ModelRegistry,
    bundles: dict[str, BuiltBundle],
    encoding: str,
    compress: Callable[[bytes], bytes],
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    url = f"{small_server.url}/v2/models/linear/infer"
    bomb = compress(b"\0" * 2_000_000)
    assert len(bomb) < SMALL_LIMIT // 10
    r = httpx.post(url, content=bomb, headers={"Content-Encoding": encoding})
    assert r.status_code == 413 and "once decompressed" in r.json()["error"]
    assert httpx.get(f"{small_server.url}/v2/health/live").status_code == 200
    ok = httpx.post(url, content=compress(_infer_body()), headers={"Content-Encoding": encoding})
    assert ok.status_code == 200 and ok.json()["model_name"] == "linear"


def test_compressed_bodies_decode_within_the_limit_and_bad_ones_are_400(
    small_server: InferenceServer, registry: ModelRegistry, bundles: dict[str, BuiltBundle]
) -> None:
    registry.swap("default", loaded(bundles["1"]))
    url = f"{small_server.url}/v2/models/linear/infer"
    body = _infer_body()
    two_members = gzip.compress(body[:10]) + gzip.compress(body[10:])
    assert httpx.post(url, content=two_members, headers={"Content-Encoding": "gzip"}).status_code == 200
    # Exactly at the limit once decoded is still accepted (padding is JSON whitespace).
    at_limit = body + b" " * (SMALL_LIMIT - len(body))
    r = httpx.post(url, content=gzip.compress(at_limit), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200
    for encoding, data, message in [
        ("gzip", gzip.compress(body)[:-12], "truncated"),
        ("gzip", b"not gzip", "not valid gzip"),
        ("deflate", zlib.compress(body) + b"junk", "data after the end"),
        ("br", body, "unsupported Content-Encoding"),
    ]:
        r = httpx.post(url, content=data, headers={"Content-Encoding": encoding})
        assert r.status_code == 400 and message in r.json()["error"], (encoding, r.text)


def test_listening_socket_is_tcp_with_nodelay(server: InferenceServer) -> None:
    # Without proto=TCP asyncio never sets TCP_NODELAY on accepted sockets, and every response
    # waits ~40 ms for the client's delayed ACK.
    import socket

    assert server.socket is not None
    assert server.socket.proto == socket.IPPROTO_TCP
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
