"""The REST API (docs/api.md): one router per resource, one error handler."""

from __future__ import annotations

from fastapi import FastAPI

from fleet_server.api import artifacts, dashboard, deployments, devices, groups, health, metrics, models, tuf
from fleet_server.api.body_limit import BodyLimit
from fleet_server.api.errors import install_error_handlers
from fleet_server.api.openapi import install_openapi
from fleet_server.limits import FIELD_LIMITS, MESSAGE_LIMITS

ROUTERS = (health, models, devices, groups, deployments, artifacts, tuf, dashboard, metrics)


def install(app: FastAPI) -> None:
    """Add every router, the error handlers, the request body bound and the OpenAPI document
    with its error answers to ``app``."""
    for module in ROUTERS:
        app.include_router(module.router)
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimit, limit=FIELD_LIMITS.request_body_bytes, max_depth=MESSAGE_LIMITS.max_depth)


__all__ = ["install"]
