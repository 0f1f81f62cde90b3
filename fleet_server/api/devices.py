"""``/api/v1/devices``: registration (open to devices) and the device list and detail."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

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
def list_devices(group: str | None = None, fleet: Fleet = Depends(get_fleet)) -> list[dict[str, Any]]:
    """All devices, or the members of ``?group=`` (404 for an unknown group)."""
    with fleet.read_sessions() as s:
        if group is not None:
            return [views.device_summary(d) for d in group_members(s, get_group(s, group))]
        return [views.device_summary(d) for d in s.scalars(select(Device).order_by(Device.device_id))]


@router.get(
    "/{device_id}",
    summary="A device with facts, desired and reported state",
    dependencies=[Depends(require_role("viewer"))],
)
def device(device_id: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    with fleet.read_sessions() as s:
        return views.device_detail(get_device(s, device_id))
