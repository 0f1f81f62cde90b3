"""Operator API tokens: made, listed, revoked, and looked up by the secret a request carries.

A token's secret is ``secrets.token_urlsafe`` (256 bits), prefixed ``eft_`` so it is recognisable
in a leaked file. Only its sha256 is stored; the secret is in the answer to :func:`create_token`
and nowhere else. Lookup is by that digest (an index), then the digests are compared in constant
time. A token can expire (``expires_at``) and be revoked; both then answer like an unknown token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from fleet_server.db import OperatorToken, utcnow
from fleet_server.errors import ConflictError, InvalidRequestError, NotFoundError, UnauthorizedError
from fleet_server.names import check_name
from fleet_server.roles import check_role

PREFIX = "eft_"
SECRET_BYTES = 32
# Names the audit log uses for callers that are not a stored token.
RESERVED_NAMES = frozenset({"bootstrap", "anonymous", "unknown"})
MAX_LIFETIME = timedelta(days=3650)


@dataclass(frozen=True)
class Operator:
    """Who a request acts as: a stored token's name and role, or ``bootstrap`` (the server's
    ``--token``, admin) or ``anonymous`` (no token, on a server that asks for none: admin)."""

    name: str
    role: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def token_state(token: OperatorToken, now: datetime) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if token.revoked_at is not None:
        return "revoked"
    expires = as_utc(token.expires_at)
    if expires is not None and expires <= now:
        return "expired"
    return "active"


def create_token(
    session: Session, name: str, role: str, expires_in_s: int | None = None
) -> tuple[OperatorToken, str]:
    """Store a new token and return it with its secret (the only time the secret is known).
    Raises :class:`InvalidRequestError` for a bad name, role or lifetime, :class:`ConflictError`
    when the name is taken (revoked tokens keep theirs)."""
    check_name(name, "token name")
    if name in RESERVED_NAMES:
        raise InvalidRequestError(f"token name {name!r} is reserved: choose another")
    check_role(role)
    longest = int(MAX_LIFETIME.total_seconds())
    if expires_in_s is not None and not 0 < expires_in_s <= longest:
        raise InvalidRequestError(f"expires_in_s {expires_in_s} is not between 1 and {longest}")
    if session.scalar(select(exists().where(OperatorToken.name == name))):
        raise ConflictError(f"a token named {name!r} exists already (revoked ones keep their name)")
    secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    now = utcnow()
    token = OperatorToken(
        name=name,
        role=role,
        token_sha256=digest(secret),
        created_at=now,
        expires_at=None if expires_in_s is None else now + timedelta(seconds=expires_in_s),
    )
    session.add(token)
    session.commit()
    return token, secret


def list_tokens(session: Session) -> list[OperatorToken]:
    return list(session.scalars(select(OperatorToken).order_by(OperatorToken.created_at, OperatorToken.id)))


def revoke_token(session: Session, name: str) -> OperatorToken:
    """Revoke ``name`` (again is a no-op). Raises :class:`NotFoundError`."""
    token = session.scalar(select(OperatorToken).where(OperatorToken.name == name))
    if token is None:
        raise NotFoundError(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.commit()
    return token


def any_tokens(session: Session) -> bool:
    """Whether a token was ever made (revoked ones count: revoking the last one must not open
    the server)."""
    return bool(session.scalar(select(exists().where(OperatorToken.id.isnot(None)))))


def authenticate(session: Session, secret: str, now: datetime | None = None) -> Operator:
    """The operator of a stored token whose secret is ``secret``. Raises
    :class:`UnauthorizedError` for an unknown, revoked or expired one, naming which (a revoked or
    expired token's holder knew a real secret; an unknown one learns nothing)."""
    wanted = digest(secret)
    token = session.scalar(select(OperatorToken).where(OperatorToken.token_sha256 == wanted))
    if token is None or not hmac.compare_digest(token.token_sha256, wanted):
        raise UnauthorizedError("missing or wrong bearer token")
    state = token_state(token, now or utcnow())
    if state != "active":
        raise TokenRefused(f"token {token.name!r} is {state}", Operator(token.name, token.role))
    return Operator(token.name, token.role)


class TokenRefused(UnauthorizedError):
    """A stored token that is revoked or expired; ``operator`` says whose (for the audit log)."""

    def __init__(self, message: str, operator: Operator) -> None:
        super().__init__(message)
        self.operator = operator
