"""``/api/v1/deployments``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.schemas import CreateDeployment
from fleet_server.deployments import create_deployment, get_deployment, list_deployments
from fleet_server.fleet import Fleet

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])


@router.post(
    "",
    status_code=202,
    summary="Deploy a model version to a group",
    dependencies=[Depends(require_role("deployer"))],
)
def create(body: CreateDeployment, fleet: Fleet = Depends(get_fleet)) -> JSONResponse:
    """202 with the deployment as stored: ``PENDING``, until the rollout controller, woken here,
    takes it up (its devices, the compiles it waits for and its state then show on ``GET``). 404
    unknown model or group; 422 when a compile it needs already failed; an older deployment to the
    same group becomes SUPERSEDED."""
    with fleet.sessions() as s:
        dep_id = create_deployment(s, fleet.profiles, body.model, body.group).id
    fleet.controller.wake()
    with fleet.read_sessions() as s:
        view = views.deployment(s, get_deployment(s, dep_id), fleet.profiles)
    return JSONResponse(view, status_code=202)


@router.get("", summary="List deployments, newest first", dependencies=[Depends(require_role("viewer"))])
def list_all(fleet: Fleet = Depends(get_fleet)) -> list[dict[str, Any]]:
    with fleet.read_sessions() as s:
        return [views.deployment(s, d, fleet.profiles) for d in list_deployments(s)]


@router.get(
    "/{deployment_id}",
    summary="A deployment with compiles, devices and counts",
    dependencies=[Depends(require_role("viewer"))],
)
def get(deployment_id: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    with fleet.read_sessions() as s:
        return views.deployment(s, get_deployment(s, deployment_id), fleet.profiles)
