"""The device's inference API: Open Inference Protocol v2 over HTTP, a thin front-end over
:class:`~agent.serving.service.InferenceService`.

Errors are the protocol's ``{"error": "..."}`` with 400 (bad input, naming the tensor), 404
(unknown model or version), 413 (a body over ``max_body_bytes``, on the wire or once
decompressed), 503 (no model loaded yet, or shed under load, with ``Retry-After``) or 504 (the
request's deadline passed in the queue), mapped from :mod:`agent.serving.errors` by one handler.
Every inference response names where it ran: the ``X-EdgeFleet-Served-By`` header and the
response parameter ``served_by`` (``local`` or ``cloud``).

The inference routes are plain Starlette routes (no FastAPI parameter machinery on the hot path);
JSON text over ``_THREAD_DECODE`` bytes is decoded and encoded off the event loop (binary tensors
are views of the body and need no thread).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from agent import __version__
from agent.serving.errors import BadRequest, NotReady, Overloaded, PayloadTooLarge, ServingError
from agent.serving.oip import HEADER_LENGTH, InferRequest, decode_request, encode_response
from agent.serving.service import InferenceService, ModelInfo, TensorInfo

MAX_BODY_BYTES = 64 << 20  # a batch of 8 224x224x3 images as JSON is ~25 MB
SERVED_BY_HEADER = "X-EdgeFleet-Served-By"
_THREAD_DECODE = 64 << 10
_INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # deflate is zlib-wrapped (RFC 9110)


def create_app(service: InferenceService, max_body_bytes: int = MAX_BODY_BYTES) -> FastInfer:
    """The inference app over ``service``, with ``/metrics``. ``max_body_bytes`` bounds a request
    body both as received (whatever the Content-Length says, chunked too) and after gzip/deflate
    decoding."""
    app = FastAPI(title="EdgeFleet agent inference API", version=__version__, docs_url=None, redoc_url=None)
    app.state.service = service
    add_oip_routes(app, service, max_body_bytes)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return FastInfer(app, service, max_body_bytes)


def add_oip_routes(app: FastAPI, service: InferenceService, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Add the protocol's ``/v2`` routes over ``service`` to ``app`` (the agent's own app, or the
    fleet server's, which serves the cloud endpoint with the same code)."""

    def guarded(fn: Any) -> Any:
        # The routes' own error mapping, so an app with other handlers (the fleet server's) keeps
        # the protocol's error body on /v2.
        async def route(request: Request) -> Response:
            try:
                return await fn(request)
            except ServingError as exc:
                return error_response(exc)

        return route

    async def server_metadata(_request: Request) -> Response:
        return JSONResponse(
            {"name": service.name, "version": service.version, "extensions": list(service.extensions)}
        )

    async def live(_request: Request) -> Response:
        return Response(status_code=200 if service.live() else 503)

    async def ready(_request: Request) -> Response:
        if not service.ready():
            raise NotReady("no model is loaded yet")
        return Response(status_code=200)

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        info = await run_in_threadpool(service.model_info, p["name"], p.get("version"))
        return JSONResponse(metadata_json(info))

    async def model_ready(request: Request) -> Response:
        p = request.path_params
        await run_in_threadpool(service.model_info, p["name"], p.get("version"))
        return Response(status_code=200)

    async def infer(request: Request) -> Response:
        p = request.path_params
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = await handle_infer(
            service, p["name"], p.get("version"), headers, request.stream(), max_body_bytes
        )
        return _starlette(answer)

    for path, fn, method in (
        ("/v2", server_metadata, "GET"),
        ("/v2/health/live", live, "GET"),
        ("/v2/health/ready", ready, "GET"),
        ("/v2/models/{name}", model_metadata, "GET"),
        ("/v2/models/{name}/versions/{version}", model_metadata, "GET"),
        ("/v2/models/{name}/ready", model_ready, "GET"),
        ("/v2/models/{name}/versions/{version}/ready", model_ready, "GET"),
        ("/v2/models/{name}/infer", infer, "POST"),
        ("/v2/models/{name}/versions/{version}/infer", infer, "POST"),
    ):
        app.add_route(path, guarded(fn), methods=[method])


def error_response(exc: ServingError) -> Response:
    return _starlette(_answer_error(exc))


def _starlette(answer: Answer) -> Response:
    return Response(
        answer.body, status_code=answer.status, headers={k.decode(): v.decode() for k, v in answer.headers}
    )


def _tensor_json(t: TensorInfo) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}


def metadata_json(info: ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "versions": list(info.versions),
        "platform": info.platform,
        "inputs": [_tensor_json(t) for t in info.inputs],
        "outputs": [_tensor_json(t) for t in info.outputs],
        "parameters": info.parameters,
    }


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, independent of the ASGI framework that sends it."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


def _answer_error(exc: ServingError) -> Answer:
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, Overloaded):
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    return Answer(exc.status, json.dumps({"error": str(exc)}).encode(), headers)


async def handle_infer(
    service: InferenceService,
    name: str,
    version: str | None,
    headers: Mapping[str, str],
    chunks: AsyncIterator[bytes],
    max_body_bytes: int,
) -> Answer:
    """One inference request from its (lower-case) headers and body chunks to its answer; every
    :class:`ServingError` becomes the protocol's error body."""
    try:
        try:
            body = await _read_body(headers, chunks, service.request_limit(name, version, max_body_bytes))
            header = headers.get(HEADER_LENGTH.lower())
            try:
                header_length = None if header is None else int(header)
            except ValueError:
                raise BadRequest(f"{HEADER_LENGTH} is not an integer: {header!r}") from None
            # Only JSON text costs to decode; binary tensors are views of the body.
            json_bytes = len(body) if header_length is None else header_length
            if json_bytes > _THREAD_DECODE:
                req = await run_in_threadpool(decode_request, body, header_length)
            else:
                req = decode_request(body, header_length)
        except ServingError as exc:
            service.metrics.requests.labels(name if service.known(name) else "_unknown", exc.outcome).inc()
            raise
        wanted = None if req.outputs is None else [o.name for o in req.outputs]
        result = await service.infer(name, version, req.inputs, wanted, _timeout(req))
        args = (result.model_name, result.model_version, req, result.outputs, {"served_by": result.served_by})
        if _json_output_bytes(req, result.outputs) > _THREAD_DECODE:
            payload, json_length = await run_in_threadpool(encode_response, *args)
        else:
            payload, json_length = encode_response(*args)
    except ServingError as exc:
        return _answer_error(exc)
    out = [(SERVED_BY_HEADER.lower().encode(), result.served_by.encode())]
    if json_length is None:
        out.append((b"content-type", b"application/json"))
    else:
        out.append((b"content-type", b"application/octet-stream"))
        out.append((HEADER_LENGTH.lower().encode(), str(json_length).encode()))
    return Answer(200, payload, out)


class FastInfer:
    """ASGI in front of the FastAPI app: ``POST .../infer`` is answered here, straight from the
    ASGI messages, and everything else goes to ``app``. On the hot path this skips six
    middleware layers and the router, which cost about a third of a small model's request."""

    def __init__(self, app: FastAPI, service: InferenceService, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.state = app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        answer = await handle_infer(
            self.service, match["name"], match["version"], headers, chunks(), self.max_body_bytes
        )
        length = (b"content-length", str(len(answer.body)).encode())
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": [*answer.headers, length]}
        )
        await send({"type": "http.response.body", "body": answer.body})


def _json_output_bytes(req: InferRequest, outputs: Mapping[str, Any]) -> int:
    """The bytes of the outputs that go out as JSON text (binary ones are copied, not encoded)."""
    binary = {o.name: o.binary for o in req.outputs or ()}
    return sum(a.nbytes for n, a in outputs.items() if not binary.get(n, req.binary_output))


def _timeout(req: InferRequest) -> float | None:
    """The request's own deadline: the ``timeout`` parameter, in microseconds as Triton's is."""
    value = req.parameters.get("timeout")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value / 1e6
    return None


async def _read_body(headers: Mapping[str, str], stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, decoded per Content-Encoding, of at most ``limit`` bytes both as received and as
    decoded. Raises :class:`PayloadTooLarge` or :class:`BadRequest`."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding != "identity" and encoding not in _WBITS:
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}")
    # Counted as it arrives: a chunked body has no Content-Length, and one may lie.
    chunks: list[bytes] = []
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    return body if encoding == "identity" else _decompress(body, encoding, limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode a gzip (one or more members) or deflate body, refusing output over ``limit`` bytes
    before it is produced: a small body can decompress to gigabytes."""
    out = bytearray()
    data = body
    try:
        while True:
            d = zlib.decompressobj(wbits=_WBITS[encoding])
            # max_length >= 1 here (0 would mean unbounded): the loop stops once out passes limit.
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise PayloadTooLarge(f"request body over {limit} bytes once decompressed")
            if not d.eof:
                raise BadRequest(f"body is not valid {encoding}: truncated")
            data = d.unused_data
            if not data:
                return bytes(out)
            if encoding != "gzip":
                raise BadRequest(f"body is not valid {encoding}: data after the end of the stream")
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from exc
