"""A/B model switch under load over both front-ends: 8 client threads (tritonclient HTTP and
gRPC) hammer one service while the served model is swapped 5 times between two versions whose
outputs differ. No request may fail, and every answer must be exactly the output of the version
it names."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from agent.runtimes.bundle_dir import verify_bundle_dir
from agent.runtimes.registry import load_bundle
from agent.serving import InferenceServer, InferenceService, LoadedModel, ModelRegistry, create_app
from agent.serving.grpc import GrpcServer
from tests.agent.agent_testkit import BuiltBundle, ort_run

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

X = np.random.default_rng(8).standard_normal((3, 4)).astype(np.float32)
SWAPS = 5
THREADS = 8


def loaded(bundle: BuiltBundle) -> LoadedModel:
    manifest = verify_bundle_dir(bundle.dir)
    return LoadedModel(bundle.name, bundle.version, load_bundle(bundle.dir, manifest), manifest)


@pytest.fixture
def fronts() -> Iterator[tuple[ModelRegistry, InferenceServer, GrpcServer]]:
    registry = ModelRegistry()
    service = InferenceService(registry)
    http = InferenceServer(create_app(service), "127.0.0.1", 0)
    grpc_server = GrpcServer(service, "127.0.0.1", 0)
    http.start()
    grpc_server.start()
    yield registry, http, grpc_server
    grpc_server.stop()
    http.stop()
    service.close()
    registry.close()


def http_caller(url: str) -> Callable[[], tuple[str, np.ndarray]]:
    c = httpclient.InferenceServerClient(url.removeprefix("http://"))
    inp = httpclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=True)

    def call() -> tuple[str, np.ndarray]:
        r = c.infer("linear", [inp])
        return r.get_response()["model_version"], r.as_numpy("logits")

    return call


def grpc_caller(address: str) -> Callable[[], tuple[str, np.ndarray]]:
    c = grpcclient.InferenceServerClient(address)
    inp = grpcclient.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)

    def call() -> tuple[str, np.ndarray]:
        r = c.infer("linear", [inp], client_timeout=30)
        return r.get_response().model_version, r.as_numpy("logits")

    return call


def test_swapping_models_under_load_over_http_and_grpc_drops_no_request(
    fronts: tuple[ModelRegistry, InferenceServer, GrpcServer], bundles: dict[str, BuiltBundle]
) -> None:
    registry, http, grpc_server = fronts
    expected = {v: ort_run(bundles[v].onnx, {"input": X})["logits"] for v in ("1", "2")}
    assert not np.allclose(expected["1"], expected["2"])
    registry.swap("default", loaded(bundles["1"]))

    lock = threading.Lock()
    answers: dict[str, dict[str, int]] = {"http": {}, "grpc": {}}
    errors: list[str] = []
    stop = threading.Event()

    def hammer(transport: str, call: Callable[[], tuple[str, np.ndarray]]) -> None:
        while not stop.is_set():
            try:
                version, got = call()
            except Exception as exc:  # any failure is the test's failure, recorded with its cause
                with lock:
                    errors.append(f"{transport}: {exc!r}")
                continue
            with lock:
                if version not in expected or not np.allclose(got, expected[version], rtol=1e-5, atol=1e-6):
                    errors.append(f"{transport}: version {version!r} answered {got.tolist()}")
                answers[transport][version] = answers[transport].get(version, 0) + 1

    def total() -> int:
        with lock:
            return sum(n for per in answers.values() for n in per.values())

    callers = [
        ("http", http_caller(http.url)) if i % 2 == 0 else ("grpc", grpc_caller(grpc_server.address))
        for i in range(THREADS)
    ]
    threads = [threading.Thread(target=hammer, args=c) for c in callers]
    for t in threads:
        t.start()
    try:
        for i in range(SWAPS + 1):
            # Let every model get real traffic before the next switch.
            mark, deadline = total(), time.monotonic() + 30
            while total() < mark + 4 * THREADS and time.monotonic() < deadline:
                time.sleep(0.005)
            if i < SWAPS:
                registry.swap("default", loaded(bundles["2" if i % 2 == 0 else "1"]))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    for transport, per in answers.items():
        assert set(per) == {"1", "2"}, (transport, per)
