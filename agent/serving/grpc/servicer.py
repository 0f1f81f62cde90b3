"""The protocol's ``inference.GRPCInferenceService`` over :class:`InferenceService` (grpc.aio).

Requests arrive as bytes and are parsed here, not by gRPC, so that garbage is the protocol's
INVALID_ARGUMENT like any other bad request (gRPC's own deserializer failure would be an opaque
INTERNAL). Every failure leaves through :func:`~agent.serving.grpc.status.status_of`; nothing a
client sends can end the server. An inference response names where it ran in the ``served_by``
parameter and the ``x-edgefleet-served-by`` trailing metadata.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from agent.serving.errors import BadRequest, ServingError
from agent.serving.grpc import oip_v2_pb2 as pb
from agent.serving.grpc.codec import DecodedRequest, decode_request, encode_response
from agent.serving.grpc.status import status_of
from agent.serving.service import InferenceService

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
SERVED_BY_METADATA = "x-edgefleet-served-by"
_THREAD_DECODE = 64 << 10  # bigger requests are parsed off the event loop, as over HTTP

# Every call takes the request's bytes: it parses them itself.
Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Message]]


class InferenceServicer:
    """One method per protocol call; :meth:`handler` registers them with a ``grpc.aio`` server."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def handler(self) -> grpc.GenericRpcHandler:
        calls: dict[str, Handler] = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
        }
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    self._guarded(name, fn), response_serializer=_serialize
                )
                for name, fn in calls.items()
            },
        )

    def _guarded(self, name: str, fn: Handler) -> Handler:
        async def call(data: bytes, context: grpc.aio.ServicerContext) -> Message:
            try:
                return await fn(data, context)
            except Exception as exc:  # mapped, never raised into gRPC: the server stays up
                code, details, trailers = status_of(exc)
                if not isinstance(exc, ServingError):
                    log.exception("gRPC %s failed", name)
            await context.abort(code, details, trailing_metadata=trailers)
            raise AssertionError("unreachable: abort raises")

        return call

    async def server_live(self, data: bytes, _ctx: Any) -> pb.ServerLiveResponse:
        _parse(pb.ServerLiveRequest, data)
        return pb.ServerLiveResponse(live=self.service.live())

    async def server_ready(self, data: bytes, _ctx: Any) -> pb.ServerReadyResponse:
        _parse(pb.ServerReadyRequest, data)
        return pb.ServerReadyResponse(ready=self.service.ready())

    async def model_ready(self, data: bytes, _ctx: Any) -> pb.ModelReadyResponse:
        req = _parse(pb.ModelReadyRequest, data)
        return pb.ModelReadyResponse(ready=self.service.model_ready(req.name, req.version or None))

    async def server_metadata(self, data: bytes, _ctx: Any) -> pb.ServerMetadataResponse:
        _parse(pb.ServerMetadataRequest, data)
        s = self.service
        return pb.ServerMetadataResponse(name=s.name, version=s.version, extensions=list(s.extensions))

    async def model_metadata(self, data: bytes, _ctx: Any) -> pb.ModelMetadataResponse:
        """Raises :class:`NotReady` (nothing loaded) or :class:`ModelNotFound`."""
        req = _parse(pb.ModelMetadataRequest, data)
        info = self.service.model_info(req.name, req.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=info.name,
            versions=list(info.versions),
            platform=info.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.outputs],
        )

    async def model_infer(self, data: bytes, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        """Raises what :meth:`InferenceService.infer` raises, and :class:`BadRequest` for a
        request that doesn't parse or whose tensors don't decode."""
        try:
            if len(data) > _THREAD_DECODE:
                decoded = await asyncio.to_thread(_decode, data)
            else:
                decoded = _decode(data)
        except ServingError as exc:
            # Counted here: the service never saw it (the model name may be unknown or unread).
            name = _model_name(data)
            label = name if self.service.known(name) else "_unknown"
            self.service.metrics.requests.labels(label, exc.outcome).inc()
            raise
        return await self._run(decoded, context)

    async def _run(self, req: DecodedRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        timeout = req.timeout
        left = context.time_remaining()  # the client's gRPC deadline, if it set one
        if left is not None:
            timeout = left if timeout is None else min(timeout, left)
        result = await self.service.infer(req.model_name, req.model_version, req.inputs, req.outputs, timeout)
        context.set_trailing_metadata(((SERVED_BY_METADATA, result.served_by),))
        return encode_response(result, req.id)


def _parse(cls: type[Message], data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise BadRequest(f"the request is not a valid {cls.DESCRIPTOR.name}: {exc}") from None


def _decode(data: bytes) -> DecodedRequest:
    return decode_request(_parse(pb.ModelInferRequest, data))


def _model_name(data: bytes) -> str:
    try:
        return pb.ModelInferRequest.FromString(data).model_name
    except DecodeError:
        return ""


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
