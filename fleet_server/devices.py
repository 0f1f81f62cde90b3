"""Device records (created or updated at enrollment, :mod:`fleet_server.identity.enrollment`) and lookup."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from agent.contracts import ContractError
from agent.contracts.topics import check_device_id
from device_profiles import DeviceProfile
from fleet_server.db import Device, utcnow
from fleet_server.errors import InvalidRequestError, NotFoundError
from fleet_server.limits import FIELD_LIMITS, FieldLimits, clip


def check_labels(labels: Mapping[str, str], what: str, limits: FieldLimits = FIELD_LIMITS) -> None:
    """Refuse labels (or a selector, which matches them) over their bounds with
    :class:`InvalidRequestError` naming ``what``: they are stored and shown with the device, and
    a truncated label would select the wrong devices."""
    if len(labels) > limits.labels:
        raise InvalidRequestError(f"{what}: {len(labels)} labels, at most {limits.labels}")
    for key, value in labels.items():
        if len(key) > limits.label_key_chars or len(value) > limits.label_value_chars:
            raise InvalidRequestError(
                f"{what}: label {clip(key, 80)!r} is over {limits.label_key_chars} characters "
                f"(key) or {limits.label_value_chars} (value)"
            )


def check_facts(facts: Mapping[str, Any], limits: FieldLimits = FIELD_LIMITS) -> None:
    """Refuse facts whose JSON is over their bound with :class:`InvalidRequestError`."""
    size = len(json.dumps(facts, default=str))
    if size > limits.facts_bytes:
        raise InvalidRequestError(f"facts: {size} bytes as JSON, at most {limits.facts_bytes}")


def get_device(session: Session, device_id: str) -> Device:
    dev = session.get(Device, device_id)
    if dev is None:
        raise NotFoundError(f"unknown device {device_id!r}")
    return dev


def upsert_device(
    session: Session,
    profiles: Mapping[str, DeviceProfile],
    device_id: str,
    profile: str,
    labels: Mapping[str, str],
    facts: Mapping[str, Any],
) -> Device:
    """Create the device, or update its profile, labels and facts, in ``session`` (the caller
    commits). Raises :class:`InvalidRequestError` for an id unusable as a topic level, an unknown profile,
    or labels or facts over their bounds (:class:`~fleet_server.limits.FieldLimits`)."""
    try:
        check_device_id(device_id)
    except ContractError as exc:
        raise InvalidRequestError(str(exc)) from exc
    check_labels(labels, "labels")
    check_facts(facts)
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
    if isinstance(url, str) and url and len(url) <= FIELD_LIMITS.url_chars:  # else it fits no column
        dev.inference_url = url
    dev.last_seen = utcnow()
    return dev
