"""gRPC callers over the protocol's ``GRPCInferenceService`` (stubs from ``tritonclient.grpc``,
whose proto is the OIP v2 one with Triton's extra calls; KServe and MLServer serve the same
package and messages). Each worker gets a channel of its own with a local subchannel pool, so
16 workers are 16 HTTP/2 connections, as the HTTP rows are 16 TCP connections."""

from __future__ import annotations

from typing import Any

import grpc

MAX_MESSAGE = 64 << 20


def service_pb() -> tuple[Any, Any]:
    """(messages module, stubs module). Raises ``ImportError`` without tritonclient[grpc]."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    return service_pb2, service_pb2_grpc


class GrpcCaller:
    """One connection; calling it sends the next of ``requests`` (round robin)."""

    def __init__(self, address: str, requests: list[Any], timeout: float = 30.0) -> None:
        _, stubs = service_pb()
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE),
            ],
        )
        self._infer = stubs.GRPCInferenceServiceStub(self._channel).ModelInfer
        self._requests = requests
        self._i = 0
        self._timeout = timeout

    def call_once(self, request: Any) -> Any:
        return self._infer(request, timeout=self._timeout)

    def __call__(self) -> None:
        req = self._requests[self._i % len(self._requests)]
        self._i += 1
        self._infer(req, timeout=self._timeout)

    def close(self) -> None:
        self._channel.close()


def wait_ready(address: str, model: str, timeout: float) -> None:
    """Until ``ModelReady`` says yes. Raises ``TimeoutError``."""
    import time

    pb, stubs = service_pb()
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = stubs.GRPCInferenceServiceStub(ch)
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=2).ready:
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.2)
    raise TimeoutError(f"gRPC {address}: model {model!r} not ready after {timeout:.0f}s ({last})")
