"""The REST API (docs/api.md): one router per resource, one error handler."""

from __future__ import annotations

from fastapi import FastAPI

from fleet_server.api import artifacts, dashboard, deployments, devices, groups, health, metrics, models
from fleet_server.api.errors import install_error_handlers

ROUTERS = (health, models, devices, groups, deployments, artifacts, dashboard, metrics)


def install(app: FastAPI) -> None:
    """Add every router and the error handlers to ``app``."""
    for module in ROUTERS:
        app.include_router(module.router)
    install_error_handlers(app)


__all__ = ["install"]
