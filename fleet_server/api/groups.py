"""``/api/v1/groups``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.schemas import CreateGroup, UpdateGroup
from fleet_server.db import Device, Group
from fleet_server.fleet import Fleet
from fleet_server.groups import create_group, get_group, group_members, set_group_policy, spec
from fleet_server.membership import members

router = APIRouter(prefix="/api/v1/groups", tags=["groups"])
VIEWER, DEPLOYER = [Depends(require_role("viewer"))], [Depends(require_role("deployer"))]


@router.post("", status_code=201, summary="Create a group", dependencies=DEPLOYER)
def create(body: CreateGroup, fleet: Fleet = Depends(get_fleet)) -> JSONResponse:
    """201 with the group; 409 when the name is taken; 400 for an invalid name or policy."""
    serving = body.serving.contract() if body.serving else None
    offload = body.offload.contract() if body.offload else None
    with fleet.sessions() as s:
        g = create_group(s, body.name, body.devices, body.selector, serving, offload)
        view = views.group(g, [d.device_id for d in group_members(s, g)])
    fleet.controller.wake()
    return JSONResponse(view, status_code=201)


@router.get("", summary="List groups with their members", dependencies=VIEWER)
def list_groups(fleet: Fleet = Depends(get_fleet)) -> list[dict[str, Any]]:
    with fleet.read_sessions() as s:
        labels = {d.device_id: d.labels or {} for d in s.scalars(select(Device))}
        groups = s.scalars(select(Group).options(selectinload(Group.members)).order_by(Group.name))
        return [views.group(g, members(spec(g), labels)) for g in groups]


@router.get("/{name}", summary="A group with its members resolved", dependencies=VIEWER)
def get(name: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    with fleet.read_sessions() as s:
        g = get_group(s, name)
        return views.group(g, [d.device_id for d in group_members(s, g)])


@router.patch("/{name}", summary="Change a group's serving and offload policies", dependencies=DEPLOYER)
def update(name: str, body: UpdateGroup, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """200 with the group; 404 for an unknown group; 400 for an invalid policy. The body is a merge
    patch of the policies (a field given sets it, ``null`` resets it, the rest stays). The members
    of the group's deployment get the new policies in a new desired state (no new deployment)."""
    with fleet.sessions() as s:
        stored = get_group(s, name)
        serving = body.serving.contract(stored.serving) if body.serving else None
        offload = body.offload.contract(stored.offload) if body.offload else None
        g = set_group_policy(s, name, serving, offload)
        view = views.group(g, [d.device_id for d in group_members(s, g)])
    fleet.controller.wake()
    return view
