"""The EdgeFleet fleet server: REST API, database, artifact store, compile jobs, rollout
controller, MQTT bridge, metrics and dashboard.

Public names: :func:`create_app`, :class:`Settings`, :func:`load_settings`. The CLI is
``fleet-server`` (:mod:`fleet_server.cli`). Nothing here imports a model runtime at start-up;
the compilers are imported by the compile worker on its first job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fastapi import FastAPI

    from fleet_server.config import Settings


def create_app(settings: Settings) -> FastAPI:
    from fleet_server.app import create_app as _create_app

    return _create_app(settings)


def __getattr__(name: str) -> Any:
    if name in ("Settings", "load_settings"):
        from fleet_server import config

        return getattr(config, name)
    raise AttributeError(name)


__all__ = ["Settings", "__version__", "create_app", "load_settings"]
