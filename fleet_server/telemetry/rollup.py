"""Downsampling and retention of telemetry (pure over a session and an explicit time).

:func:`roll_up` sums raw windows into one-minute rollups per (device, model, minute of ``ts``).
Every rollup figure is a sum (or a max), so rollups merge by adding: the job takes the raw rows
it has not summed yet (``id`` above the watermark in ``telemetry_rollup_state``), adds them into
the rollups of their minutes (creating or updating rows) and moves the watermark, all in one
transaction that locks the watermark row, so two replicas never sum a row twice. A window that
arrives late (a device replaying its offline buffer) lands in its own, older minute.

Rows are taken only once received at least ``lag_s`` ago: on PostgreSQL ids are handed out before
commit, so a row with a lower id may become visible after a higher one; the lag covers the
ingest's short transactions.

:func:`prune` deletes raw rows older than the raw retention (only those already summed) and
rollups older than the rollup retention.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleet_server.db import TelemetryRollup, TelemetryRollupState, TelemetryRow
from fleet_server.telemetry.figures import chunks

STATE = "rollup"
BATCH = 5000  # raw rows summed per transaction (short transactions; call again for more)


def aware(t: datetime) -> datetime:
    """``t`` as an aware UTC time (SQLite hands stored times back naive)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def minute(t: datetime) -> datetime:
    return aware(t).replace(second=0, microsecond=0)


def _state(session: Session) -> TelemetryRollupState:
    st = session.scalars(
        select(TelemetryRollupState).where(TelemetryRollupState.name == STATE).with_for_update()
    ).first()
    if st is None:
        st = TelemetryRollupState(name=STATE, last_id=0)
        session.add(st)
        session.flush()
    return st


def _fresh(device_id: str, model: str, bucket: datetime) -> TelemetryRollup:
    return TelemetryRollup(
        device_id=device_id,
        model=model,
        bucket=bucket,
        windows=0,
        requests=0,
        errors=0,
        latency_weight=0,
        p50_sum=0.0,
        p95_sum=0.0,
        p99_sum=0.0,
        offload_weight=0,
        offload_sum=0.0,
        cpu_sum=0.0,
        cpu_n=0,
        dropped=0,
    )


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _add(r: TelemetryRollup, t: TelemetryRow) -> None:
    answered = t.requests - t.errors
    r.windows += 1
    r.requests += t.requests
    r.errors += t.errors
    if t.p95_ms is not None:
        r.latency_weight += answered
        r.p50_sum += (t.p50_ms or 0.0) * answered
        r.p95_sum += t.p95_ms * answered
        r.p99_sum += (t.p99_ms or 0.0) * answered
        r.p95_max = _max(r.p95_max, t.p95_ms)
    if t.offload_ratio is not None:
        r.offload_weight += answered
        r.offload_sum += t.offload_ratio * answered
    if t.cpu_percent is not None:
        r.cpu_sum += t.cpu_percent
        r.cpu_n += 1
    r.memory_max = _max(r.memory_max, t.memory_mb)
    r.temperature_max = _max(r.temperature_max, t.temperature_c)
    r.dropped += t.dropped
    if t.classes:
        classes = dict(r.classes or {})
        for k, n in t.classes.items():
            classes[k] = classes.get(k, 0) + n
        r.classes = classes  # a new object: the JSON column sees the change
    if t.outputs:
        outputs: dict[str, Any] = {k: dict(v) for k, v in (r.outputs or {}).items()}
        for name, st in t.outputs.items():
            n, mean = st.get("count") or 0, st.get("mean")
            if not n or mean is None:
                continue
            std = st.get("std") or 0.0
            o = outputs.setdefault(name, {"count": 0, "sum": 0.0, "squares": 0.0, "min": None, "max": None})
            o["count"] += n
            o["sum"] += mean * n
            o["squares"] += (std * std + mean * mean) * n
            o["min"] = st.get("min") if o["min"] is None else min(o["min"], st.get("min", o["min"]))
            o["max"] = st.get("max") if o["max"] is None else max(o["max"], st.get("max", o["max"]))
        r.outputs = outputs


def roll_up(session: Session, now: datetime, lag_s: float = 5.0, batch: int = BATCH) -> int:
    """Sum up to ``batch`` raw rows received by ``now - lag_s`` into their minutes' rollups.
    Returns how many raw rows were summed (0: nothing left). Run inside a transaction."""
    st = _state(session)
    rows = session.scalars(
        select(TelemetryRow)
        .where(TelemetryRow.id > st.last_id, TelemetryRow.received_at <= now - timedelta(seconds=lag_s))
        .order_by(TelemetryRow.id)
        .limit(batch)
    ).all()
    if not rows:
        return 0
    by_key: dict[tuple[str, str, datetime], list[TelemetryRow]] = {}
    for t in rows:
        by_key.setdefault((t.device_id, t.model, minute(t.ts)), []).append(t)
    first, last = min(k[2] for k in by_key), max(k[2] for k in by_key)
    existing: dict[tuple[str, str, datetime], TelemetryRollup] = {}
    for ids in chunks({k[0] for k in by_key}):
        assert ids is not None
        q = select(TelemetryRollup).where(
            TelemetryRollup.device_id.in_(ids),
            TelemetryRollup.bucket >= first,
            TelemetryRollup.bucket <= last,
        )
        for r in session.scalars(q):
            existing[(r.device_id, r.model, minute(r.bucket))] = r
    for key, members in by_key.items():
        found = existing.get(key)
        r = found if found is not None else _fresh(*key)
        if found is None:
            session.add(r)
        for t in members:
            _add(r, t)
    st.last_id = rows[-1].id
    st.updated_at = now
    return len(rows)


def prune(session: Session, now: datetime, raw_keep: timedelta, rollup_keep: timedelta) -> tuple[int, int]:
    """Delete raw rows older than ``raw_keep`` that were summed, and rollups older than
    ``rollup_keep``. Returns (raw rows, rollups) deleted. Run inside a transaction."""
    st = _state(session)
    raw = session.execute(
        delete(TelemetryRow).where(TelemetryRow.ts < now - raw_keep, TelemetryRow.id <= st.last_id)
    )
    rolled = session.execute(delete(TelemetryRollup).where(TelemetryRollup.bucket < now - rollup_keep))
    return int(getattr(raw, "rowcount", 0) or 0), int(getattr(rolled, "rowcount", 0) or 0)
