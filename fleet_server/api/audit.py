"""``GET /api/v1/audit``: the audit log, newest first, in pages (admin only). There is no route
that changes or removes an entry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.audit import MAX_LIMIT, list_entries
from fleet_server.fleet import Fleet

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], dependencies=[Depends(require_role("admin"))])


@router.get("", summary="The audit log of mutating calls, newest first")
def list_all(
    limit: int = Query(100, ge=1, le=MAX_LIMIT, description="entries in this page"),
    before: int | None = Query(
        None, ge=1, le=2**63 - 1, description="only entries older than this id (the previous page's last)"
    ),
    fleet: Fleet = Depends(get_fleet),
) -> list[dict[str, Any]]:
    """Entries ``{id, at, actor, role, method, path, action, target, client, status}``; for the
    next page pass the last ``id`` as ``before``."""
    with fleet.read_sessions() as s:
        return [views.audit_entry(e) for e in list_entries(s, limit, before)]
