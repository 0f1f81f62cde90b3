"""The one place where errors become HTTP answers: ``{"error": {"code", "message"}}``.

Domain errors (:mod:`fleet_server.errors`) map by class; FastAPI's request validation errors
become 400 ``invalid_request``; Starlette's own HTTP errors (unknown route, wrong method) keep
their status in the same envelope.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_server.errors import (
    BrokerUnavailableError,
    BusyError,
    ConfigError,
    ConflictError,
    FleetError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    StoreError,
    UnauthorizedError,
    UnusableError,
)
from fleet_server.limits import truncate

log = logging.getLogger(__name__)

STATUS: dict[type[FleetError], int] = {
    InvalidRequestError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    UnusableError: 422,
    BusyError: 429,
    StoreError: 503,
    BrokerUnavailableError: 503,
    ConfigError: 500,
}


# An error message may quote what the client sent (a bad id): bounded, so a 400 stays small.
MESSAGE_CHARS = 1000


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": truncate(message, MESSAGE_CHARS)}}


def status_of(exc: FleetError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:  # the nearest mapped class wins
            return STATUS[cls]
    return 500


async def _fleet_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FleetError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429:
        headers = {"Retry-After": "5"}
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return JSONResponse(error_body("invalid_request", "; ".join(parts) or "invalid request"), status_code=400)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FleetError, _fleet_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
