"""``GET /api/v1/fleet/summary``: devices total and online, by active model and by profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from fleet_server.api.deps import get_fleet, require_role
from fleet_server.fleet import Fleet
from fleet_server.fleet_summary import fleet_summary

router = APIRouter(prefix="/api/v1/fleet", tags=["fleet"])


@router.get("/summary", summary="The fleet at a glance", dependencies=[Depends(require_role("viewer"))])
def summary(fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """``{devices, online, models: [{model, devices, online}], profiles: [{profile, devices,
    online}], other_models, other_profiles}``, aggregated in the database."""
    with fleet.read_sessions() as s:
        return fleet_summary(s)
