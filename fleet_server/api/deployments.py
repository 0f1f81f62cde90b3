"""``/api/v1/deployments``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.schemas import CreateDeployment
from fleet_server.deployments import act_on_deployment, create_deployment, get_deployment, list_deployments
from fleet_server.fleet import Fleet
from fleet_server.limits import DB_INT_MAX

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
    unknown model or group; 400 for a rollout spec that is not valid; 422 when a compile it needs
    already failed; an older deployment to the same group becomes SUPERSEDED."""
    spec = body.spec()
    with fleet.sessions() as s:
        dep_id = create_deployment(s, fleet.profiles, body.model, body.group, spec).id
    fleet.controller.wake()
    with fleet.read_sessions() as s:
        view = views.deployment(s, get_deployment(s, dep_id), fleet.profiles)
    return JSONResponse(view, status_code=202)


@router.get("", summary="List deployments, newest first", dependencies=[Depends(require_role("viewer"))])
def list_all(
    limit: int = Query(100, ge=1, le=1000, description="at most this many"),
    before: int | None = Query(
        None, ge=1, le=DB_INT_MAX, description="only deployments with a smaller id (paging)"
    ),
    fleet: Fleet = Depends(get_fleet),
) -> list[dict[str, Any]]:
    """Each deployment with its rollout progress and device counts, without the device rows
    (``GET /deployments/{id}`` pages those)."""
    with fleet.read_sessions() as s:
        return [views.deployment_summary(d) for d in list_deployments(s, limit, before)]


@router.get(
    "/{deployment_id}",
    summary="A deployment with compiles, devices and counts",
    dependencies=[Depends(require_role("viewer"))],
)
def get(
    deployment_id: str,
    limit: int = Query(1000, ge=0, le=10000, description="device rows to include"),
    offset: int = Query(0, ge=0, le=DB_INT_MAX, description="device rows to skip (by device id)"),
    state: str | None = Query(None, max_length=16, description="only device rows in this state"),
    fleet: Fleet = Depends(get_fleet),
) -> dict[str, Any]:
    """The deployment with its compiles, rollout progress (waves, gates), counts and a page of
    its device rows (``devices_total`` says how many match)."""
    with fleet.read_sessions() as s:
        dep = get_deployment(s, deployment_id)
        return views.deployment(s, dep, fleet.profiles, limit=limit, offset=offset, state=state)


def _act(action: str, summary: str, doc: str) -> None:
    def act(deployment_id: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
        with fleet.sessions() as s:
            act_on_deployment(s, deployment_id, action)
        fleet.controller.wake()
        with fleet.read_sessions() as s:
            return views.deployment_summary(get_deployment(s, deployment_id))

    act.__doc__ = doc
    act.__name__ = action
    router.post(
        f"/{{deployment_id}}/{action}", summary=summary, dependencies=[Depends(require_role("deployer"))]
    )(act)


_act("pause", "Pause a rollout", "No new wave opens; devices already told go on. 422 when it is not running.")
_act("resume", "Resume a paused rollout", "The rollout goes on from its wave. 422 when it is not paused.")
_act("abort", "Abort a rollout", "HALTED where it is, without a roll-back. 422 when it already ended.")
_act(
    "rollback",
    "Roll a rollout back",
    "HALTED, and every device it told the new model is told its previous models again; ROLLED_BACK "
    "once they all run them. 422 when it is already rolling back or ended.",
)
