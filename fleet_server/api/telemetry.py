"""Telemetry queries: a device's recent windows, and a model's figures over a group.

- ``GET /api/v1/devices/{id}/telemetry?since=&limit=``: the device's raw windows, newest first,
  at most ``limit`` (default 100, at most 1000).
- ``GET /api/v1/telemetry/summary?model=NAME:VERSION&group=G&since=&points=``: the model's
  figures summed over the group's devices (every device without ``group``) since ``since``
  (default: an hour ago), from the raw windows while they are kept, else from the one-minute
  rollups; and ``series``, the newest ``points`` minutes (default 60, at most 1440) of rollups.

Both answer aggregated or paged data, never every row; both need the viewer role.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.views import iso
from fleet_server.db import TelemetryRollup, TelemetryRow
from fleet_server.devices import get_device
from fleet_server.fleet import Fleet
from fleet_server.groups import get_group, group_members
from fleet_server.telemetry import model_figures, rollup_figures
from fleet_server.telemetry.figures import chunks
from fleet_server.telemetry.rollup import aware

router = APIRouter(tags=["telemetry"])
DEFAULT_SPAN = timedelta(hours=1)


def _since(since: datetime | None, now: datetime) -> datetime:
    return now - DEFAULT_SPAN if since is None else aware(since)


def window_view(t: TelemetryRow) -> dict[str, Any]:
    return {
        "ts": iso(aware(t.ts)),
        "received_at": iso(aware(t.received_at)),
        "model": t.model or None,
        "seq": t.seq,
        "window_s": t.window_s,
        "requests": t.requests,
        "errors": t.errors,
        "throughput_rps": t.throughput_rps,
        "latency": {"p50_ms": t.p50_ms, "p95_ms": t.p95_ms, "p99_ms": t.p99_ms},
        "queue_depth": t.queue_depth,
        "offload_ratio": t.offload_ratio,
        "cpu_percent": t.cpu_percent,
        "memory_mb": t.memory_mb,
        "temperature_c": t.temperature_c,
        "dropped": t.dropped,
        "classes": t.classes,
        "outputs": t.outputs,
    }


@router.get(
    "/api/v1/devices/{device_id}/telemetry",
    summary="A device's recent telemetry windows, newest first",
    dependencies=[Depends(require_role("viewer"))],
)
def device_telemetry(
    device_id: str,
    since: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    fleet: Fleet = Depends(get_fleet),
) -> dict[str, Any]:
    """404 for an unknown device. ``since``: ISO 8601 time or Unix seconds (default: an hour ago)."""
    now = datetime.now(UTC)
    with fleet.read_sessions() as s:
        get_device(s, device_id)
        rows = s.scalars(
            select(TelemetryRow)
            .where(TelemetryRow.device_id == device_id, TelemetryRow.ts >= _since(since, now))
            .order_by(TelemetryRow.ts.desc(), TelemetryRow.id.desc())
            .limit(limit)
        ).all()
        return {"device_id": device_id, "windows": [window_view(t) for t in rows]}


def series(
    s: Session, model: str, ids: list[str] | None, since: datetime, points: int
) -> list[dict[str, Any]]:
    """Per-minute sums of ``model``'s rollups over ``ids`` (``None``: all), newest ``points``."""
    R = TelemetryRollup
    merged: dict[datetime, list[float]] = {}
    for chunk in chunks(ids):
        q = select(
            R.bucket,
            func.sum(R.requests),
            func.sum(R.errors),
            func.sum(R.latency_weight),
            func.sum(R.p95_sum),
            func.sum(R.offload_weight),
            func.sum(R.offload_sum),
            func.count(),
        ).where(R.model == model, R.bucket >= since)
        if chunk is not None:
            q = q.where(R.device_id.in_(chunk))
        q = q.group_by(R.bucket).order_by(R.bucket.desc()).limit(points)
        for bucket, *sums in s.execute(q):
            acc = merged.setdefault(aware(bucket), [0.0] * 7)
            for i, v in enumerate(sums):
                acc[i] += float(v or 0)
    out = []
    for bucket in sorted(merged)[-points:]:
        req, errs, lat_w, p95, off_w, off, devices = merged[bucket]
        out.append(
            {
                "minute": iso(bucket),
                "requests": int(req),
                "errors": int(errs),
                "p95_ms": p95 / lat_w if lat_w else None,
                "offload_ratio": off / off_w if off_w else None,
                "devices": int(devices),
            }
        )
    return out


@router.get(
    "/api/v1/telemetry/summary",
    summary="A model's telemetry figures over a group (or the fleet)",
    dependencies=[Depends(require_role("viewer"))],
)
def telemetry_summary(
    model: str = Query(..., min_length=3, max_length=300, description="name:version"),
    group: str | None = None,
    since: datetime | None = None,
    points: int = Query(60, ge=1, le=1440),
    fleet: Fleet = Depends(get_fleet),
) -> dict[str, Any]:
    """404 for an unknown group. Figures are request-weighted; ``None`` where nothing was measured."""
    now = datetime.now(UTC)
    start = _since(since, now)
    raw_from = now - timedelta(hours=fleet.settings.telemetry_raw_retention_h)
    with fleet.read_sessions() as s:
        ids = None if group is None else [d.device_id for d in group_members(s, get_group(s, group))]
        if start >= raw_from:
            figures, source = model_figures(s, ids, model, start), "raw"
        else:
            figures, source = rollup_figures(s, ids, model, start), "rollups"
        return {
            "model": model,
            "group": group,
            "since": iso(start),
            "source": source,
            "figures": figures.to_dict(),
            "series": series(s, model, ids, start, points),
        }
