"""The inference API over gRPC (``inference.GRPCInferenceService``) in process: tritonclient.grpc
sync and asyncio, our own generated stub for requests tritonclient won't build, and raw bytes for
requests that aren't protobuf at all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.runtimes.bundle_dir import verify_bundle_dir
from agent.runtimes.registry import load_bundle
from agent.serving import InferenceService, LoadedModel, ModelRegistry
from agent.serving.errors import DeadlineExceeded, Overloaded
from agent.serving.grpc import GrpcServer
from tests.agent.agent_testkit import BuiltBundle, ort_run
from tests.agent.serving.serving_models import pair_bundle

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from agent.serving.grpc import oip_v2_pb2 as pb
from agent.serving.grpc import oip_v2_pb2_grpc as pb_grpc

X = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
INFER = "/inference.GRPCInferenceService/ModelInfer"


def loaded(bundle: BuiltBundle) -> LoadedModel:
    manifest = verify_bundle_dir(bundle.dir)
    return LoadedModel(bundle.name, bundle.version, load_bundle(bundle.dir, manifest), manifest)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    return pair_bundle(tmp_path_factory.mktemp("pair"))


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture
def service(registry: ModelRegistry) -> Iterator[InferenceService]:
    s = InferenceService(registry)
    yield s
    s.close()


@pytest.fixture
def server(service: InferenceService) -> Iterator[GrpcServer]:
    s = GrpcServer(service, "127.0.0.1", 0)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(server: GrpcServer) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.address)
    yield c
    c.close()


@pytest.fixture
def stub(server: GrpcServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def raw_request(
    model: str = "pair", x: np.ndarray = X, datatype: str = "FP32", **kw: Any
) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, **kw)
    req.inputs.add(name="input", datatype=datatype, shape=x.shape)
    req.raw_input_contents.append(x.tobytes())
    return req


def rpc_error(call: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call(*args, **kw)
    return exc.value


def triton_input(x: np.ndarray = X) -> grpcclient.InferInput:
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def test_port_zero_picks_a_free_port_and_a_taken_port_is_an_os_error(
    server: GrpcServer, service: InferenceService
) -> None:
    assert server.port > 0 and server.address == f"127.0.0.1:{server.port}"
    with pytest.raises(OSError, match="cannot bind the gRPC inference API"):
        GrpcServer(service, "127.0.0.1", server.port).start()


def test_health_readiness_and_metadata(
    registry: ModelRegistry, client: grpcclient.InferenceServerClient, pair: BuiltBundle
) -> None:
    assert client.is_server_live() and not client.is_server_ready()
    with pytest.raises(InferenceServerException) as exc:
        client.get_model_metadata("pair")
    assert exc.value.status() == "StatusCode.UNAVAILABLE" and "no model is loaded" in exc.value.message()

    registry.swap("default", loaded(pair))
    assert client.is_server_ready()
    assert client.is_model_ready("pair") and client.is_model_ready("pair", "1")
    assert not client.is_model_ready("pair", "7") and not client.is_model_ready("other")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "edgefleet-agent" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("pair", as_json=True)
    assert model["name"] == "pair" and model["versions"] == ["1"] and model["platform"] == "onnxruntime"
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert [o["name"] for o in model["outputs"]] == ["logits", "scaled"]
    with pytest.raises(InferenceServerException) as exc:
        client.get_model_metadata("pair", "2")
    assert exc.value.status() == "StatusCode.NOT_FOUND" and "no version '2'" in exc.value.message()


def test_infer_raw_with_request_id_served_by_and_an_output_subset(
    registry: ModelRegistry, client: grpcclient.InferenceServerClient, pair: BuiltBundle
) -> None:
    registry.swap("default", loaded(pair))
    want = ort_run(pair.onnx, {"input": X})
    result = client.infer("pair", [triton_input()], request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("scaled"), want["scaled"], rtol=1e-6)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-7", "pair", "1")
    assert response.parameters["served_by"].string_param == "local"

    only = client.infer("pair", [triton_input()], outputs=[grpcclient.InferRequestedOutput("scaled")])
    assert [o.name for o in only.get_response().outputs] == ["scaled"]
    assert only.as_numpy("logits") is None
    np.testing.assert_allclose(only.as_numpy("scaled"), want["scaled"], rtol=1e-6)


def test_the_asyncio_client_works_unchanged(
    registry: ModelRegistry, server: GrpcServer, pair: BuiltBundle
) -> None:
    registry.swap("default", loaded(pair))

    async def main() -> tuple[bool, Any]:
        c = aioclient.InferenceServerClient(server.address)
        try:
            inp = aioclient.InferInput("input", list(X.shape), "FP32")
            inp.set_data_from_numpy(X)
            ready = await c.is_model_ready("pair")
            results = await asyncio.gather(*(c.infer("pair", [inp], request_id=str(i)) for i in range(8)))
            return ready, results
        finally:
            await c.close()

    ready, results = asyncio.run(main())
    assert ready
    assert sorted(r.get_response().id for r in results) == [str(i) for i in range(8)]
    want = ort_run(pair.onnx, {"input": X})["logits"]
    for r in results:
        np.testing.assert_allclose(r.as_numpy("logits"), want, rtol=1e-6)


def test_typed_contents_are_decoded_and_checked(
    registry: ModelRegistry, stub: pb_grpc.GRPCInferenceServiceStub, pair: BuiltBundle
) -> None:
    registry.swap("default", loaded(pair))
    req = pb.ModelInferRequest(model_name="pair", id="c1")
    req.inputs.add(name="input", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend(X.ravel())
    resp = stub.ModelInfer(req)
    assert resp.id == "c1" and [o.name for o in resp.outputs] == ["logits", "scaled"]
    assert list(resp.outputs[0].shape) == [2, 3] and resp.outputs[0].datatype == "FP32"
    got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 3)  # always answered raw
    np.testing.assert_allclose(got, ort_run(pair.onnx, {"input": X})["logits"], rtol=1e-6)

    req.inputs[0].contents.fp32_contents.pop()
    err = rpc_error(stub.ModelInfer, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "7 values given" in err.details()
    wrong = pb.ModelInferRequest(model_name="pair")
    wrong.inputs.add(name="input", datatype="FP32", shape=[2, 4]).contents.int_contents.extend([1] * 8)
    err = rpc_error(stub.ModelInfer, wrong)
    assert "go in contents.fp32_contents, not int_contents" in err.details()
    half = pb.ModelInferRequest(model_name="pair")
    half.inputs.add(name="input", datatype="FP16", shape=[2, 4]).contents.fp32_contents.extend([1.0] * 8)
    assert "FP16 travels only in raw_input_contents" in rpc_error(stub.ModelInfer, half).details()


def _bad_requests() -> list[tuple[str, pb.ModelInferRequest, grpc.StatusCode, str]]:
    short = raw_request()
    short.raw_input_contents[0] = X.tobytes()[:-4]
    two_raw = raw_request()
    two_raw.raw_input_contents.append(b"\0" * 4)
    unknown_out = raw_request()
    unknown_out.outputs.add(name="probs")
    bytes_type = raw_request(datatype="BYTES")
    return [
        ("unknown model", raw_request("resnet"), grpc.StatusCode.NOT_FOUND, "unknown model 'resnet'"),
        ("unknown version", raw_request(model_version="9"), grpc.StatusCode.NOT_FOUND, "no version '9'"),
        ("wrong shape", raw_request(x=np.zeros((2, 5), np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
         "shape [2, 5] does not fit"),
        ("wrong dtype", raw_request(x=np.zeros((2, 4), np.int32), datatype="INT32"),
         grpc.StatusCode.INVALID_ARGUMENT, "datatype int32 given"),
        ("byte count", short, grpc.StatusCode.INVALID_ARGUMENT, "28 bytes of raw data; FP32 [2, 4] needs 32"),
        ("raw per input", two_raw, grpc.StatusCode.INVALID_ARGUMENT, "2 raw_input_contents for 1 inputs"),
        ("unknown output", unknown_out, grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'probs'"),
        ("BYTES", bytes_type, grpc.StatusCode.INVALID_ARGUMENT, "datatype 'BYTES' is not supported"),
    ]  # fmt: skip


BAD = _bad_requests()


@pytest.mark.parametrize(("what", "req", "code", "message"), BAD, ids=[r[0] for r in BAD])
def test_bad_requests_get_the_matching_status_and_the_server_serves_on(
    registry: ModelRegistry,
    stub: pb_grpc.GRPCInferenceServiceStub,
    client: grpcclient.InferenceServerClient,
    pair: BuiltBundle,
    what: str,
    req: pb.ModelInferRequest,
    code: grpc.StatusCode,
    message: str,
) -> None:
    registry.swap("default", loaded(pair))
    err = rpc_error(stub.ModelInfer, req)
    assert err.code() == code and message in err.details(), what
    assert client.infer("pair", [triton_input()]).as_numpy("logits").shape == (2, 3)


def test_garbage_bytes_are_invalid_argument_and_counted(
    server: GrpcServer,
    service: InferenceService,
    registry: ModelRegistry,
    client: grpcclient.InferenceServerClient,
    pair: BuiltBundle,
) -> None:
    registry.swap("default", loaded(pair))
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, with a length past the end
    with grpc.insecure_channel(server.address) as channel:
        for method in (INFER, "/inference.GRPCInferenceService/ModelMetadata"):
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            err = rpc_error(call, garbage)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in err.details()
    assert 'model="_unknown",outcome="bad_request"} 1.0' in service.metrics.render().decode()
    assert client.infer("pair", [triton_input()]).get_response().model_name == "pair"


def test_a_message_over_the_limit_is_resource_exhausted(
    service: InferenceService, registry: ModelRegistry, pair: BuiltBundle
) -> None:
    registry.swap("default", loaded(pair))
    small = GrpcServer(service, "127.0.0.1", 0, max_message_bytes=1 << 20)
    small.start()
    try:
        c = grpcclient.InferenceServerClient(small.address)
        with pytest.raises(InferenceServerException) as exc:
            c.infer("pair", [triton_input(np.zeros((80_000, 4), np.float32))])  # 1.28 MB
        assert exc.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert c.infer("pair", [triton_input()]).as_numpy("logits").shape == (2, 3)
        c.close()
    finally:
        small.stop()


@pytest.mark.parametrize(
    ("raised", "code", "details"),
    [
        (Overloaded("queue full", retry_after=2.5), grpc.StatusCode.UNAVAILABLE, "queue full"),
        (DeadlineExceeded("waited too long"), grpc.StatusCode.DEADLINE_EXCEEDED, "waited too long"),
        (RuntimeError("boom"), grpc.StatusCode.INTERNAL, "internal error"),
    ],
)
def test_service_errors_map_to_status_codes_in_one_place(
    monkeypatch: pytest.MonkeyPatch,
    service: InferenceService,
    registry: ModelRegistry,
    stub: pb_grpc.GRPCInferenceServiceStub,
    pair: BuiltBundle,
    raised: Exception,
    code: grpc.StatusCode,
    details: str,
) -> None:
    registry.swap("default", loaded(pair))
    real = service.infer

    async def failing(*_a: Any, **_k: Any) -> Any:
        raise raised

    monkeypatch.setattr(service, "infer", failing)
    err = rpc_error(stub.ModelInfer, raw_request())
    assert err.code() == code and err.details() == details
    trailers = dict(err.trailing_metadata() or ())
    assert trailers.get("retry-after") == ("3" if isinstance(raised, Overloaded) else None)
    monkeypatch.setattr(service, "infer", real)
    assert stub.ModelInfer(raw_request()).model_name == "pair"


def test_the_timeout_parameter_and_the_grpc_deadline_bound_the_wait(
    monkeypatch: pytest.MonkeyPatch,
    service: InferenceService,
    registry: ModelRegistry,
    stub: pb_grpc.GRPCInferenceServiceStub,
    pair: BuiltBundle,
) -> None:
    registry.swap("default", loaded(pair))
    timeouts: list[float | None] = []
    real = service.infer

    async def spy(name: str, version: Any, inputs: Any, outputs: Any = None, timeout: Any = None) -> Any:
        timeouts.append(timeout)
        return await real(name, version, inputs, outputs, timeout)

    monkeypatch.setattr(service, "infer", spy)
    stub.ModelInfer(raw_request())
    req = raw_request()
    req.parameters["timeout"].int64_param = 250_000  # microseconds, as Triton's
    stub.ModelInfer(req)
    stub.ModelInfer(req, timeout=0.1)  # the client's deadline is the nearer one
    assert timeouts[0] is None and timeouts[1] == 0.25
    assert timeouts[2] is not None and 0 < timeouts[2] < 0.2  # (the deadline travels with some slack)


def test_stop_closes_the_port(service: InferenceService) -> None:
    s = GrpcServer(service, "127.0.0.1", 0)
    s.start()
    s.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", s.port)) != 0


def test_generated_modules_live_in_their_own_descriptor_pool() -> None:
    """tritonclient.grpc defines the same message names; both must import in one process."""
    import tritonclient.grpc.service_pb2 as triton_pb

    ours = pb.ModelInferRequest.DESCRIPTOR
    assert ours.full_name == triton_pb.ModelInferRequest.DESCRIPTOR.full_name == "inference.ModelInferRequest"
    assert ours.file.pool is not triton_pb.ModelInferRequest.DESCRIPTOR.file.pool
    wire = raw_request(id="x").SerializeToString()
    assert triton_pb.ModelInferRequest.FromString(wire).id == "x"  # same field numbers


def test_the_committed_modules_match_the_proto(tmp_path: Path) -> None:
    """oip_v2_pb2.py is generated (regen.sh); an edit to the proto without regenerating fails here."""
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools is not installed")
    from google.protobuf import descriptor_pb2

    root = Path(__file__).resolve().parents[3]
    out = tmp_path / "set.pb"
    assert (
        protoc.main(["protoc", f"-I{root}", f"--descriptor_set_out={out}", "agent/serving/grpc/oip_v2.proto"])
        == 0
    )
    (fresh,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file

    def drop_json_names(messages: Any) -> None:  # the Python generator leaves them out
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            drop_json_names(m.nested_type)

    drop_json_names(fresh.message_type)
    assert descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb) == fresh
