"""``/api/v1/tokens``: operator API tokens (admin only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.schemas import CreateToken
from fleet_server.db import utcnow
from fleet_server.fleet import Fleet
from fleet_server.tokens import create_token, list_tokens, revoke_token

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], dependencies=[Depends(require_role("admin"))])


@router.post("", status_code=201, summary="Make an operator token (its secret is shown only here)")
def create(body: CreateToken, fleet: Fleet = Depends(get_fleet)) -> JSONResponse:
    """201 with the token and, under ``token``, its secret: the only time it is shown (the
    server keeps its sha256 only). 409 when the name is taken, revoked tokens included; 400 for a
    bad or reserved name (``bootstrap``, ``anonymous``, ``unknown``)."""
    with fleet.sessions() as s:
        token, secret = create_token(s, body.name, body.role, body.expires_in_s)
        view = views.operator_token(token, utcnow())
    return JSONResponse(view | {"token": secret}, status_code=201)


@router.get("", summary="List operator tokens (never their secrets)")
def list_all(fleet: Fleet = Depends(get_fleet)) -> list[dict[str, Any]]:
    now = utcnow()
    with fleet.read_sessions() as s:
        return [views.operator_token(t, now) for t in list_tokens(s)]


@router.delete("/{name}", summary="Revoke an operator token")
def revoke(name: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """200 with the token, now ``revoked`` (revoking again changes nothing); 404 for an unknown
    name. A revoked token answers 401 from then on; its name stays taken."""
    with fleet.sessions() as s:
        return views.operator_token(revoke_token(s, name), utcnow())
