"""Request dependencies: the running :class:`~fleet_server.fleet.Fleet` and the operator's role.

Who a request acts as (:func:`identify`):

- the server's ``--token`` (``EDGEFLEET_TOKEN``), when it has one: ``bootstrap``, an admin;
- a stored operator token (:mod:`fleet_server.tokens`): its name and role;
- no token, on a server with neither a ``--token`` nor any stored token: ``anonymous``, an admin
  (such a server is open, as it was before tokens had roles; making the first token closes it).

Anything else is refused with 401; a known operator whose role is below the route's, with 403.
The operator (or who was refused) is left on ``request.state`` for the audit log
(:mod:`fleet_server.api.audit_log`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleet_server.errors import ForbiddenError, UnauthorizedError
from fleet_server.fleet import Fleet
from fleet_server.roles import ROLES, allows
from fleet_server.tokens import Operator, TokenRefused, any_tokens, authenticate

BOOTSTRAP = Operator("bootstrap", "admin")
ANONYMOUS = Operator("anonymous", "admin")
UNKNOWN = "unknown"  # the audit log's name for a token that matches none
ACTOR_KEY = "edgefleet_actor"  # request.state attribute: (name, role or None)


def get_fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


# Declares the bearer scheme in the OpenAPI document (and marks the operations that need it); the
# check itself is below, so a server without tokens takes requests without one.
BEARER = HTTPBearer(auto_error=False, description="an operator token (or the server's --token)")


def bearer_of(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, ``None`` if there is none."""
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def identify(fleet: Fleet, authorization: str) -> Operator:
    """The operator a request with this ``Authorization`` header acts as (module docstring).
    Raises :class:`UnauthorizedError` (a :class:`~fleet_server.tokens.TokenRefused` for a revoked
    or expired stored token)."""
    bootstrap = fleet.settings.token
    given = bearer_of(authorization)
    if given is not None and bootstrap and hmac.compare_digest(given.encode(), bootstrap.encode()):
        return BOOTSTRAP
    with fleet.read_sessions() as s:
        if given is None:
            if not bootstrap and not any_tokens(s):
                return ANONYMOUS
            raise UnauthorizedError("missing bearer token")
        if not bootstrap and not any_tokens(s):
            return ANONYMOUS  # an open server ignores tokens, as before
        return authenticate(s, given)


def note_actor(request: Request, name: str, role: str | None) -> None:
    """Say who ``request`` acts as, for its audit log entry. The role check does it for
    operators; a route that authenticates another way (a device) calls it itself."""
    setattr(request.state, ACTOR_KEY, (name, role))


def operator_of(request: Request, authorization: str | None = None) -> Operator:
    """:func:`identify` for ``request`` (or for ``authorization`` in its place), noting who it is
    (or who was refused) for the audit log."""
    if authorization is None:
        authorization = request.headers.get("authorization", "")
    try:
        op = identify(get_fleet(request), authorization)
    except TokenRefused as exc:
        note_actor(request, exc.operator.name, exc.operator.role)
        raise
    except UnauthorizedError:
        has_token = bearer_of(authorization) is not None
        note_actor(request, UNKNOWN if has_token else ANONYMOUS.name, None)
        raise
    note_actor(request, op.name, op.role)
    return op


RoleCheck = Callable[..., Operator]


def require_role(role: str) -> RoleCheck:
    """A dependency that admits a request whose operator holds ``role`` or a higher one
    (viewer < deployer < admin; :mod:`fleet_server.roles`) and returns the
    :class:`~fleet_server.tokens.Operator`. Raises :class:`UnauthorizedError` (401) when the
    request names no operator, :class:`ForbiddenError` (403) when its role is too low."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")

    def check(request: Request, _declared: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> Operator:
        op = operator_of(request)
        if not allows(op.role, role):
            raise ForbiddenError(f"token {op.name!r} has the role {op.role}; this needs {role} or higher")
        return op

    check.required_role = role  # type: ignore[attr-defined]  # read by the OpenAPI document
    check.__name__ = f"require_{role}"
    return check


def require_role_or_query_token(role: str) -> RoleCheck:
    """:func:`require_role`, also taking the token as ``?token=`` when no ``Authorization``
    header comes: for the event stream only, since a browser's EventSource can't send headers.
    The token is checked the same way; the header wins when both come."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")

    def check(
        request: Request,
        _declared: HTTPAuthorizationCredentials | None = Depends(BEARER),
        token: str | None = Query(None, max_length=512, description="the bearer token, for EventSource"),
    ) -> Operator:
        header = request.headers.get("authorization", "")
        op = operator_of(request, header if header or not token else f"Bearer {token}")
        if not allows(op.role, role):
            raise ForbiddenError(f"token {op.name!r} has the role {op.role}; this needs {role} or higher")
        return op

    check.required_role = role  # type: ignore[attr-defined]  # read by the OpenAPI document
    check.__name__ = f"require_{role}_or_query_token"
    return check


# Any operator at all (a viewer is the least): the check routes had before roles.
require_operator = require_role("viewer")
