"""Enrollment tokens, enrollment, certificate renewal and revocation, over the database.

- A token is made by an admin for a group (and labels), with a number of uses and an expiry; only
  its sha256 is stored. :func:`enroll` spends one use: the CSR is checked first, so a bad request
  costs the token nothing, and the use is taken with one conditional ``UPDATE`` so that two
  devices racing for the last use can't both win.
- Enrolling an id that exists (re-enrolment) needs a token like a new device; it starts the
  device's MQTT connection numbering and its reports over (the new key is a new device as far as
  the stored state goes), and clears a revocation.
- :func:`renew` issues a new certificate to a device that proved its identity with a current,
  unrevoked one (the mTLS listener checks the chain; this checks the serial against the database).
- :func:`revoke` marks the device and every certificate it was issued; :func:`revoked_serials`
  is what the CRL lists.

Errors: :class:`~fleet_server.errors.TokenUnknownError` (401), ``TokenUsedError`` and
``TokenExpiredError`` (403), ``RevokedError`` (403), ``InvalidRequestError`` (400),
``NotFoundError`` (404 for an unknown group).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from device_profiles import DeviceProfile
from fleet_server.db import Device, DeviceCertificate, EnrollmentToken, GroupMember
from fleet_server.devices import check_labels, get_device, upsert_device
from fleet_server.errors import (
    InvalidRequestError,
    RevokedError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
    UnauthorizedError,
)
from fleet_server.groups import get_group
from fleet_server.identity.ca import SERVER_CN, FleetCA, Issued, read_csr, utc_now

TOKEN_PREFIX = "eft_"
MAX_TOKEN_USES = 100_000
MAX_TOKEN_LIFETIME_S = 366 * 24 * 3600


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)  # SQLite gives naive UTC back


@dataclass(frozen=True)
class NewToken:
    token: str  # shown once; only its hash is stored
    group: str
    labels: dict[str, str]
    uses: int
    expires_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "group": self.group,
            "labels": self.labels,
            "uses": self.uses,
            "expires_at": self.expires_at.isoformat(),
        }


def create_token(
    session: Session,
    group: str,
    labels: Mapping[str, str],
    expires_in_s: float,
    uses: int,
    now: dt.datetime | None = None,
) -> NewToken:
    """Store a new token for the existing ``group`` and commit. Raises
    :class:`InvalidRequestError` (uses, expiry or labels out of bounds), ``NotFoundError``."""
    if not 1 <= uses <= MAX_TOKEN_USES:
        raise InvalidRequestError(f"uses: {uses}; between 1 and {MAX_TOKEN_USES}")
    if not 0 < expires_in_s <= MAX_TOKEN_LIFETIME_S:
        raise InvalidRequestError(
            f"expires_in_s: {expires_in_s}; more than 0, at most {MAX_TOKEN_LIFETIME_S}"
        )
    check_labels(labels, "labels")
    get_group(session, group)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = (now or utc_now()) + dt.timedelta(seconds=expires_in_s)
    session.add(
        EnrollmentToken(
            token_sha256=token_hash(token),
            group_name=group,
            labels=dict(labels),
            uses_left=uses,
            expires_at=expires_at,
        )
    )
    session.commit()
    return NewToken(token, group, dict(labels), uses, expires_at)


def _spend(session: Session, token: str, now: dt.datetime) -> EnrollmentToken:
    """Take one use of ``token`` (not committed). Raises the token errors."""
    row = session.scalars(
        select(EnrollmentToken).where(EnrollmentToken.token_sha256 == token_hash(token))
    ).first()
    if row is None:
        raise TokenUnknownError(
            "unknown enrollment token: ask an admin for one (edgectl devices enroll-token create)"
        )
    if _aware(row.expires_at) <= now:
        raise TokenExpiredError(
            f"the enrollment token expired at {_aware(row.expires_at).isoformat()}; ask for a new one"
        )
    taken = session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.id == row.id, EnrollmentToken.uses_left > 0)
        .values(uses_left=EnrollmentToken.uses_left - 1)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise TokenUsedError("the enrollment token has no uses left; ask for a new one")
    session.refresh(row)
    return row


def _record(session: Session, dev: Device, issued: Issued) -> None:
    serial = format(issued.serial, "x")
    session.add(DeviceCertificate(serial=serial, device_id=dev.device_id, not_after=issued.not_after))
    dev.cert_serial = serial
    dev.cert_not_after = issued.not_after


def enroll(
    session: Session,
    ca: FleetCA,
    profiles: Mapping[str, DeviceProfile],
    *,
    token: str,
    device_id: str,
    profile: str,
    labels: Mapping[str, str],
    facts: Mapping[str, Any],
    csr_pem: str,
    cert_days: float,
    now: dt.datetime | None = None,
) -> tuple[Device, Issued]:
    """Spend a use of ``token``, create or update the device in the token's group and sign its
    CSR (CN = ``device_id``); commits. Raises the errors in the module docstring."""
    now = now or utc_now()
    csr = read_csr(csr_pem)
    if device_id == SERVER_CN:
        raise InvalidRequestError(f"device id {SERVER_CN!r} is reserved for the fleet server")
    row = _spend(session, token, now)
    merged = {**dict(labels), **(row.labels or {})}  # the admin's labels win
    existed = session.get(Device, device_id) is not None
    dev = upsert_device(session, profiles, device_id, profile, merged, facts)
    if existed:
        # A new key is a new device: its connection numbers and report sequence start again.
        dev.status_connection = None
        dev.reported = None
        dev.reported_generation = None
        dev.online = False
    dev.revoked_at = None
    if session.get(GroupMember, (row.group_name, device_id)) is None:
        try:
            get_group(session, row.group_name)
        except Exception:
            pass  # the group was deleted since the token was made: the device is enrolled anyway
        else:
            session.add(GroupMember(group_name=row.group_name, device_id=device_id))
    issued = ca.issue_client(csr, device_id, cert_days, now)
    _record(session, dev, issued)
    session.commit()
    return dev, issued


def check_certificate(session: Session, device_id: str, serial: int) -> Device:
    """The device presenting the certificate ``serial`` with CN ``device_id``, if that
    certificate was issued to it and neither it nor the device is revoked.
    Raises :class:`RevokedError` or :class:`UnauthorizedError`."""
    cert = session.get(DeviceCertificate, format(serial, "x"))
    if cert is None or cert.device_id != device_id:
        raise UnauthorizedError("this certificate was not issued to a device of this fleet")
    dev = session.get(Device, device_id)
    if dev is None:
        raise UnauthorizedError(f"device {device_id!r} is not enrolled")
    if cert.revoked_at is not None or dev.revoked_at is not None:
        raise RevokedError(f"device {device_id!r} is revoked; it enrolls again only with a new token")
    return dev


def renew(
    session: Session,
    ca: FleetCA,
    device_id: str,
    serial: int,
    csr_pem: str,
    cert_days: float,
    now: dt.datetime | None = None,
) -> Issued:
    """A new certificate for a device that presented ``serial``; commits."""
    csr = read_csr(csr_pem)
    dev = check_certificate(session, device_id, serial)
    issued = ca.issue_client(csr, device_id, cert_days, now)
    _record(session, dev, issued)
    session.commit()
    return issued


def revoke(session: Session, device_id: str, now: dt.datetime | None = None) -> list[str]:
    """Revoke ``device_id`` and every certificate issued to it; commits. Returns the serials newly
    revoked. Raises ``NotFoundError``."""
    now = now or utc_now()
    dev = get_device(session, device_id)
    dev.revoked_at = dev.revoked_at or now
    dev.online = False
    serials = []
    for cert in session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.device_id == device_id, DeviceCertificate.revoked_at.is_(None)
        )
    ):
        cert.revoked_at = now
        serials.append(cert.serial)
    session.commit()
    return serials


def revoked_serials(session: Session, now: dt.datetime | None = None) -> list[tuple[int, dt.datetime]]:
    """``(serial, revoked_at)`` of every revoked certificate not yet expired: the CRL's entries."""
    now = now or utc_now()
    rows = session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.revoked_at.is_not(None), DeviceCertificate.not_after > now
        )
    ).all()
    return [(int(r.serial, 16), _aware(r.revoked_at)) for r in rows if r.revoked_at is not None]
