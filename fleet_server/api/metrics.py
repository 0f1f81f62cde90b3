"""``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import PlainTextResponse, Response

from fleet_server.api.deps import get_fleet
from fleet_server.fleet import Fleet

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(fleet: Fleet = Depends(get_fleet)) -> Response:
    """Devices online, deployments by state, compile durations, MQTT messages."""
    return Response(generate_latest(fleet.metrics.registry), media_type=CONTENT_TYPE_LATEST)
