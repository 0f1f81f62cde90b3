"""The fleet at a glance, aggregated in the database (``GROUP BY``, never a row per device): how
many devices, how many online, and the spread of active models and of profiles. The dashboard
and its live feed show it; at 10,000 devices it is still a few rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from fleet_server.db import Device

TOP = 20  # the largest buckets by name; the rest are summed under ``other``


def _spread(session: Session, column: Any, key: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    online = func.sum(case((Device.online.is_(True), 1), else_=0))
    rows = session.execute(
        select(column, func.count(), online)
        .group_by(column)
        .order_by(func.count().desc(), column.is_(None), column)  # ties: by name, none last
    ).all()
    buckets = [{key: name, "devices": int(n), "online": int(on or 0)} for name, n, on in rows]
    rest = buckets[TOP:]
    other = {"buckets": len(rest), "devices": sum(b["devices"] for b in rest)}
    return buckets[:TOP], other


def fleet_summary(session: Session) -> dict[str, Any]:
    """``{devices, online, models: [{model, devices, online}], profiles: [{profile, devices,
    online}], other_models, other_profiles}``: ``model`` is the active ``name:version`` (``None``
    for a device that runs none yet); the largest :data:`TOP` buckets, biggest first (ties by
    name, ``None`` last), and the
    rest counted under ``other_*`` (``{buckets, devices}``)."""
    total, online = session.execute(
        select(func.count(), func.sum(case((Device.online.is_(True), 1), else_=0))).select_from(Device)
    ).one()
    models, other_models = _spread(session, Device.active, "model")
    profiles, other_profiles = _spread(session, Device.profile, "profile")
    return {
        "devices": int(total or 0),
        "online": int(online or 0),
        "models": models,
        "profiles": profiles,
        "other_models": other_models,
        "other_profiles": other_profiles,
    }
