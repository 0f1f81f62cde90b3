"""The REST API (docs/api.md): one router per resource, one error handler."""

from __future__ import annotations

from fastapi import FastAPI

from fleet_server.api import (
    artifacts,
    audit,
    dashboard,
    deployments,
    devices,
    events,
    fleet_summary,
    groups,
    health,
    metrics,
    models,
    telemetry,
    tokens,
    tuf,
)
from fleet_server.api.audit_log import AuditLog
from fleet_server.api.body_limit import BodyLimit
from fleet_server.api.errors import install_error_handlers
from fleet_server.api.openapi import install_openapi
from fleet_server.api.routes import api_routes
from fleet_server.limits import FIELD_LIMITS, MESSAGE_LIMITS

ROUTERS = (
    health,
    models,
    telemetry,
    devices,
    fleet_summary,
    groups,
    deployments,
    events,
    tokens,
    audit,
    artifacts,
    tuf,
    dashboard,
    metrics,
)


def install(app: FastAPI) -> None:
    """Add every router, the error handlers, the request body bound, the audit log of mutating
    calls (outermost, so it sees the body bound's refusals too) and the OpenAPI document with its
    error answers to ``app``."""
    for module in ROUTERS:
        app.include_router(module.router)
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimit, limit=FIELD_LIMITS.request_body_bytes, max_depth=MESSAGE_LIMITS.max_depth)
    app.add_middleware(AuditLog)
    app.state.api_routes = api_routes(app)  # for the audit log's calls refused before routing


__all__ = ["install"]
