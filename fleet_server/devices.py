"""Device registration and lookup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from agent.contracts import ContractError
from agent.contracts.topics import check_device_id
from device_profiles import DeviceProfile
from fleet_server.db import Device, utcnow
from fleet_server.errors import InvalidRequestError, NotFoundError


def get_device(session: Session, device_id: str) -> Device:
    dev = session.get(Device, device_id)
    if dev is None:
        raise NotFoundError(f"unknown device {device_id!r}")
    return dev


def register_device(
    session: Session,
    profiles: Mapping[str, DeviceProfile],
    device_id: str,
    profile: str,
    labels: Mapping[str, str],
    facts: Mapping[str, Any],
) -> Device:
    """Create the device, or update its profile, labels and facts (idempotent), and commit.
    Raises :class:`InvalidRequestError` for an id unusable as a topic level or an unknown profile."""
    try:
        check_device_id(device_id)
    except ContractError as exc:
        raise InvalidRequestError(str(exc)) from exc
    prof = profiles.get(profile)
    if prof is None:
        raise InvalidRequestError(f"unknown profile {profile!r} (known: {', '.join(sorted(profiles))})")
    dev = session.get(Device, device_id)
    if dev is None:
        dev = Device(device_id=device_id, desired_generation=0)
        session.add(dev)
    dev.profile = prof.name
    dev.target = prof.target
    dev.labels = dict(labels)
    dev.facts = dict(facts)
    url = facts.get("inference_url")
    if isinstance(url, str) and url:
        dev.inference_url = url
    dev.last_seen = utcnow()
    session.commit()
    return dev
