"""``/api/v1/devices``: enrollment (a device with an enrollment token), enrollment tokens and
revocation (admin), and the device list and detail."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import func, or_, select

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, note_actor, require_role
from fleet_server.api.schemas import EnrollDevice, EnrollTokenBody
from fleet_server.db import Device
from fleet_server.devices import get_device
from fleet_server.errors import BrokerUnavailableError
from fleet_server.fleet import Fleet
from fleet_server.groups import get_group, group_members
from fleet_server.identity.enrollment import create_token, enroll
from fleet_server.limits import DB_INT_MAX

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.post(
    "/enroll-tokens",
    summary="Create an enrollment token (admin)",
    status_code=201,
    dependencies=[Depends(require_role("admin"))],
)
def create_enroll_token(body: EnrollTokenBody, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """A token for ``uses`` devices to enroll into ``group`` (which must exist) with ``labels``,
    until ``expires_in_s`` from now. The token is shown once; the server keeps its hash."""
    with fleet.sessions() as s:
        new = create_token(s, body.group, body.labels, body.expires_in_s, body.uses)
    return new.to_dict()


@router.post("/enroll", summary="Enroll a device with a token and a CSR")
def enroll_device(body: EnrollDevice, request: Request, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """Spend a use of the token, create or update the device in the token's group, and sign its
    CSR (CN = device id). 401 ``enroll_token_unknown``; 403 ``enroll_token_used`` or
    ``enroll_token_expired``; 400 for an invalid id, CSR or an unknown profile; 503 while the
    server has no broker (nothing spent)."""
    req = body.contract()
    note_actor(request, req.device_id, "device")  # the audit log names the enrolling device
    if not fleet.mqtt_info()["port"]:  # before the token is spent: the agent asks again later
        raise BrokerUnavailableError("the server has no MQTT broker yet; try again shortly")
    with fleet.sessions() as s:
        dev, issued = enroll(
            s,
            fleet.identity.ca,
            fleet.profiles,
            token=req.token,
            device_id=req.device_id,
            profile=req.profile,
            labels=req.labels,
            facts=req.facts,
            csr_pem=req.csr,
            cert_days=fleet.settings.cert_days,
        )
        view = views.device_summary(dev)
    fleet.controller.wake()  # it may belong to a deployed group now
    return {
        "device": view,
        "certificate": issued.pem.decode(),
        "ca_certificate": fleet.identity.ca.cert_pem.decode(),
        "mqtt": fleet.mqtt_info(),
        "device_api": fleet.device_api_url,
        "tuf_root": tuf_root(fleet),
        "server_time": time.time(),
    }


def tuf_root(fleet: Fleet) -> Any:
    """The TUF root metadata devices are to trust, when the fleet has a TUF repository."""
    tuf = getattr(fleet, "tuf", None)
    if tuf is None:
        return None
    raw = tuf.root_json()
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


@router.post(
    "/{device_id}/revoke",
    summary="Revoke a device's certificates (admin)",
    dependencies=[Depends(require_role("admin"))],
)
def revoke_device(device_id: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """The device's certificates go on the CRL, the broker reloads it and drops the device's
    connection; downloads and renewal refuse it. It enrolls again only with a new token. 404 for
    an unknown device."""
    serials = fleet.identity.revoke(device_id, fleet.broker, fleet.mqtt)
    with fleet.read_sessions() as s:
        view = views.device_summary(get_device(s, device_id))
    return {"device": view, "revoked_serials": serials}


@router.get("", summary="List devices", dependencies=[Depends(require_role("viewer"))])
def list_devices(
    response: Response,
    group: str | None = None,
    q: str | None = Query(None, max_length=128, description="only ids, profiles or models containing this"),
    limit: int = Query(1000, ge=1, le=10000, description="at most this many, by device id"),
    offset: int = Query(0, ge=0, le=DB_INT_MAX, description="skip this many (paging)"),
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
