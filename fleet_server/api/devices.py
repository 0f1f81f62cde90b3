"""``/api/v1/devices``: registration (open to devices) and the device list and detail."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import func, or_, select

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.schemas import RegisterDevice
from fleet_server.db import Device
from fleet_server.devices import get_device, register_device
from fleet_server.fleet import Fleet
from fleet_server.groups import get_group, group_members

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.post("/register", summary="Register a device (idempotent)")
def register(body: RegisterDevice, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """Create or update the device; answers with the MQTT endpoint to use. 400 for an invalid id
    or an unknown profile. Open without the operator token (enrollment tokens come with the
    trust-chain work)."""
    with fleet.sessions() as s:
        dev = register_device(s, fleet.profiles, body.device_id, body.profile, body.labels, body.facts)
        view = views.device_summary(dev)
    fleet.controller.wake()  # it may belong to a deployed group now
    return {"device": view, "mqtt": fleet.mqtt_info(), "server_time": time.time()}


@router.get("", summary="List devices", dependencies=[Depends(require_role("viewer"))])
def list_devices(
    response: Response,
    group: str | None = None,
    q: str | None = Query(None, max_length=128, description="only ids, profiles or models containing this"),
    limit: int = Query(1000, ge=1, le=10000, description="at most this many, by device id"),
    offset: int = Query(0, ge=0, description="skip this many (paging)"),
    fleet: Fleet = Depends(get_fleet),
) -> list[dict[str, Any]]:
    """A page of the devices, or of the members of ``?group=`` (404 for an unknown group), by
    id; ``X-Total-Count`` says how many match."""
    with fleet.read_sessions() as s:
        if group is not None:
            found = [d for d in group_members(s, get_group(s, group)) if q is None or _matches(d, q)]
            response.headers["X-Total-Count"] = str(len(found))
            return [views.device_summary(d) for d in found[offset : offset + limit]]
        base = select(Device)
        if q:
            base = base.where(
                or_(
                    Device.device_id.icontains(q, autoescape=True),
                    Device.profile.icontains(q, autoescape=True),
                    Device.active.icontains(q, autoescape=True),
                )
            )
        total = s.scalar(select(func.count()).select_from(base.subquery())) or 0
        response.headers["X-Total-Count"] = str(total)
        page = s.scalars(base.order_by(Device.device_id).offset(offset).limit(limit))
        return [views.device_summary(d) for d in page]


def _matches(d: Device, q: str) -> bool:
    q = q.lower()
    return any(q in (v or "").lower() for v in (d.device_id, d.profile, d.active))


@router.get(
    "/{device_id}",
    summary="A device with facts, desired and reported state",
    dependencies=[Depends(require_role("viewer"))],
)
def device(device_id: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    with fleet.read_sessions() as s:
        return views.device_detail(get_device(s, device_id))
