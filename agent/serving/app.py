"""The device's inference API: Open Inference Protocol v2 over HTTP (FastAPI).

Errors are ``{"error": "..."}`` with 400 (bad input, naming the tensor), 404 (unknown model or
version), 413 (a body over ``max_body_bytes``, on the wire or once decompressed) or 503 (no model
loaded yet), mapped from :mod:`agent.serving.errors` by one handler.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from agent import __version__
from agent.contracts.manifest import TensorSpec
from agent.serving.errors import BadRequest, NotReady, PayloadTooLarge, ServingError
from agent.serving.metrics import Metrics
from agent.serving.models import LoadedModel, ModelRegistry
from agent.serving.oip import HEADER_LENGTH, InferRequest, decode_request, encode_response, tensor_metadata

SERVER_NAME = "edgefleet-agent"
EXTENSIONS = ["binary_tensor_data"]
MAX_BODY_BYTES = 256 << 20
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # deflate is zlib-wrapped (RFC 9110)


def create_app(
    registry: ModelRegistry, metrics: Metrics | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    """The inference app. ``max_body_bytes`` bounds a request body both as received (whatever the
    Content-Length says, chunked too) and after gzip/deflate decoding."""
    metrics = metrics or Metrics()
    app = FastAPI(title="EdgeFleet agent inference API", version=__version__, docs_url=None, redoc_url=None)
    app.state.registry = registry
    app.state.metrics = metrics

    @app.exception_handler(ServingError)
    async def serving_error(_request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/v2")
    def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/health/live")
    def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    def ready() -> Response:
        if not registry.ready():
            raise NotReady("no model is loaded yet")
        return Response(status_code=200)

    @app.get("/v2/models/{name}")
    def model_metadata(name: str) -> dict[str, Any]:
        return _metadata(registry.find(name))

    @app.get("/v2/models/{name}/versions/{version}")
    def model_version_metadata(name: str, version: str) -> dict[str, Any]:
        return _metadata(registry.find(name, version))

    @app.get("/v2/models/{name}/ready")
    def model_ready(name: str) -> Response:
        registry.find(name)
        return Response(status_code=200)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    def model_version_ready(name: str, version: str) -> Response:
        registry.find(name, version)
        return Response(status_code=200)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        return await _infer(registry, metrics, name, None, request, max_body_bytes)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await _infer(registry, metrics, name, version, request, max_body_bytes)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _metadata(model: LoadedModel) -> dict[str, Any]:
    m = model.manifest
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": m.runtime,
        "inputs": [tensor_metadata(t) for t in m.inputs],
        "outputs": [tensor_metadata(t) for t in m.outputs],
        "parameters": {"target": m.target, "precision": m.precision},
    }


async def _infer(
    registry: ModelRegistry,
    metrics: Metrics,
    name: str,
    version: str | None,
    request: Request,
    max_body_bytes: int,
) -> Response:
    outcome = "error"
    try:
        body = await _read_body(request, max_body_bytes)
        header = request.headers.get(HEADER_LENGTH)
        try:
            header_length = None if header is None else int(header)
        except ValueError:
            raise BadRequest(f"{HEADER_LENGTH} is not an integer: {header!r}") from None
        req = decode_request(body, header_length)
        payload, json_length = await run_in_threadpool(_run, registry, metrics, name, version, req)
        outcome = "ok"
    except ServingError as exc:
        outcome = {400: "bad_request", 404: "not_found", 413: "too_large", 503: "not_ready"}.get(
            exc.status, "error"
        )
        raise
    finally:
        # Only served names become label values: a client can't grow the series without bound.
        metrics.requests.labels(name if name in registry.names() else "_unknown", outcome).inc()
    if json_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)})


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, decoded per Content-Encoding, of at most ``limit`` bytes both as received and as
    decoded. Raises :class:`PayloadTooLarge` or :class:`BadRequest`."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding != "identity" and encoding not in _WBITS:
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}")
    # Counted as it arrives: a chunked body has no Content-Length, and one may lie.
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
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


def _run(
    registry: ModelRegistry, metrics: Metrics, name: str, version: str | None, req: InferRequest
) -> tuple[bytes, int | None]:
    with registry.use(name, version) as model:
        feed = _check_inputs(model.manifest.inputs, req.inputs)
        known = {t.name for t in model.manifest.outputs}
        for out in req.outputs or ():
            if out.name not in known:
                raise BadRequest(f"unknown output {out.name!r} (outputs: {', '.join(sorted(known))})")
        start = time.perf_counter()
        try:
            result = model.adapter.infer(feed)
        except ValueError as exc:  # the adapter's word for a tensor that doesn't fit
            raise BadRequest(str(exc)) from exc
        metrics.latency.labels(model.name, model.version).observe(time.perf_counter() - start)
        return encode_response(model.name, model.version, req, result)


def _check_inputs(specs: tuple[TensorSpec, ...], given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every input present, known, of the model's datatype and shape. Raises BadRequest naming it."""
    by_name = {t.name: t for t in specs}
    for name in given:
        if name not in by_name:
            raise BadRequest(f"unknown input {name!r} (inputs: {', '.join(by_name)})")
    for spec in specs:
        if spec.name not in given:
            raise BadRequest(f"input {spec.name!r} is missing")
        arr = given[spec.name]
        if arr.dtype != np.dtype(spec.dtype):
            raise BadRequest(
                f"input {spec.name!r}: datatype {arr.dtype.name} given, the model takes {spec.dtype}"
            )
        if arr.ndim != len(spec.shape) or any(
            w >= 0 and w != g for w, g in zip(spec.shape, arr.shape, strict=False)
        ):
            raise BadRequest(f"input {spec.name!r}: shape {list(arr.shape)} does not fit {list(spec.shape)}")
    return given
