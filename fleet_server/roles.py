"""Operator roles, lowest first; a higher role holds every right of the lower ones.

- ``viewer``: read (every ``GET`` of the API);
- ``deployer``: also push models, compile, deploy, pause and abort rollouts, edit group policies;
- ``admin``: also manage operator tokens, signing keys, enrollment tokens and revocations, and
  read the audit log.
"""

from __future__ import annotations

from fleet_server.errors import InvalidRequestError

ROLES: tuple[str, ...] = ("viewer", "deployer", "admin")


def check_role(role: str) -> str:
    """Return ``role`` if it is one of :data:`ROLES`, else raise :class:`InvalidRequestError`."""
    if role not in ROLES:
        raise InvalidRequestError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def allows(held: str, needed: str) -> bool:
    """Whether an operator holding ``held`` may do what needs ``needed`` (unknown: never)."""
    if held not in ROLES or needed not in ROLES:
        return False
    return ROLES.index(held) >= ROLES.index(needed)
