"""``create_app(settings)``: the FastAPI app with every part wired, started and stopped by the
app's lifespan (database migrated, compile worker, broker, MQTT bridge, rollout controller), and
the cloud inference endpoint that devices offload to (Open Inference Protocol v2 under ``/v2``, and
over gRPC on ``settings.cloud_grpc_port``; ``app.state.grpc_address`` once started)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agent.serving.app import add_oip_routes
from agent.serving.grpc import GrpcServer
from agent.serving.models import ModelRegistry
from fleet_server import __version__, api
from fleet_server.api import views
from fleet_server.cloud import CloudInferenceService, CloudModels
from fleet_server.config import Settings
from fleet_server.fleet import Fleet
from fleet_server.live import FeedLimits, LiveFeed


def create_app(settings: Settings, fleet: Fleet | None = None) -> FastAPI:
    """The app for ``settings``. Nothing starts until the lifespan does (``uvicorn`` or
    ``with TestClient(app)``); ``app.state.fleet`` holds the parts. Raises :class:`ConfigError`
    or :class:`StoreError` when the store can't be opened."""
    fleet = fleet or Fleet(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        grpc: GrpcServer | None = None
        try:
            fleet.start()
            port = settings.cloud_grpc_port
            if port is not None:
                grpc = GrpcServer(_app.state.cloud, settings.host, port)
                _app.state.grpc_address = grpc.start()
        except BaseException:
            fleet.stop()
            raise
        try:
            yield
        finally:
            _app.state.live.stop()
            if grpc is not None:
                grpc.stop()
            _app.state.cloud.close()
            fleet.stop()

    app = FastAPI(
        title="EdgeFleet fleet server",
        version=__version__,
        description="Compile one ONNX model per device profile and roll it out over MQTT (docs/api.md).",
        lifespan=lifespan,
    )
    app.state.fleet = fleet
    app.state.grpc_address = None
    app.state.live = LiveFeed(
        fleet.read_sessions,
        views.deployment_summary,
        FeedLimits(heartbeat_s=settings.events_heartbeat_s),
    )
    api.install(app)
    cloud = cloud_service(fleet)
    app.state.cloud = cloud
    add_oip_routes(app, cloud)
    return app


def cloud_service(fleet: Fleet) -> CloudInferenceService:
    """The cloud inference endpoint over the fleet's models (loaded on the first request)."""
    models = CloudModels(
        fleet.read_sessions, fleet.store, fleet.settings.data_dir / "cloud-models", ModelRegistry()
    )
    return CloudInferenceService(models)
