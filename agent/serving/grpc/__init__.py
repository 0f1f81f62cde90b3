"""The inference API over gRPC: the Open Inference Protocol's ``inference.GRPCInferenceService``.

- ``oip_v2.proto``: the protocol's messages and service; ``oip_v2_pb2*.py`` are generated from it
  (``regen.sh``), and ``oip_v2_pb2_grpc.GRPCInferenceServiceStub`` is a client for it.
- :mod:`~agent.serving.grpc.codec`: protobuf ↔ numpy (pure).
- :mod:`~agent.serving.grpc.status`: serving errors → gRPC status codes, in one place.
- :class:`InferenceServicer`: the calls, over :class:`~agent.serving.service.InferenceService`.
- :class:`GrpcServer`: a ``grpc.aio`` server on its own event loop in a thread.
"""

from agent.serving.grpc.server import GrpcServer
from agent.serving.grpc.servicer import SERVICE_NAME, InferenceServicer

__all__ = ["SERVICE_NAME", "GrpcServer", "InferenceServicer"]
