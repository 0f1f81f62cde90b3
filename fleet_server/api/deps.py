"""Request dependencies: the running :class:`~fleet_server.fleet.Fleet` and the operator token."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleet_server.errors import UnauthorizedError
from fleet_server.fleet import Fleet


def get_fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


# Declares the bearer scheme in the OpenAPI document (and marks the operations that need it); the
# check itself is below, so a server without a token takes requests without one.
BEARER = HTTPBearer(auto_error=False, description="the operator token, when the server has one")


def require_operator(
    request: Request, _declared: HTTPAuthorizationCredentials | None = Depends(BEARER)
) -> None:
    """When the server has a token, the request must carry ``Authorization: Bearer <token>``.
    Raises :class:`UnauthorizedError`."""
    token = get_fleet(request).settings.token
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise UnauthorizedError("missing or wrong bearer token")


ROLES = ("viewer", "deployer", "admin")


def require_role(role: str):  # type: ignore[no-untyped-def]
    """A dependency that admits a request whose operator holds ``role`` or a higher one
    (viewer < deployer < admin). Until operator tokens carry roles, any operator passes."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")

    def check(request: Request, _declared: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> None:
        require_operator(request, _declared)

    return check
