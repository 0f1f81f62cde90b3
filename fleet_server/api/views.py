"""Database rows → the JSON shapes of docs/api.md. Times are ISO 8601 UTC strings; desired and
reported states appear as they go on the wire."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent.contracts import ReportedError
from agent.contracts.policy import ServingPolicy
from device_profiles import DeviceProfile
from fleet_server.build_settings import build_key
from fleet_server.db import (
    AuditEntry,
    Bundle,
    Deployment,
    DeploymentDevice,
    Device,
    Group,
    ModelVersion,
    OperatorToken,
)
from fleet_server.queries import find_bundle
from fleet_server.rollout import GroupOffload, RolloutSpec
from fleet_server.states import DeviceRolloutState
from fleet_server.tokens import token_state


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reported_error(e: ReportedError | None) -> dict[str, str] | None:
    return None if e is None else {"code": e.code, "message": e.message}


def model_summary(mv: ModelVersion) -> dict[str, Any]:
    return {
        "name": mv.name,
        "version": mv.version,
        "sha256": mv.sha256,
        "size": mv.size,
        "created_at": iso(mv.created_at),
    }


def model_version(mv: ModelVersion) -> dict[str, Any]:
    return model_summary(mv) | {
        "inputs": mv.inputs,
        "outputs": mv.outputs,
        "calibration": mv.calibration_key is not None,
        "validation": mv.validation_key is not None,
        "min_agreement": mv.min_agreement,
    }


def bundle(b: Bundle) -> dict[str, Any]:
    manifest = b.manifest or {}
    return {
        "target": b.target,
        "precision": b.precision,
        "settings": b.settings_key,
        "build_settings": b.settings,
        "profile": b.profile,
        "status": b.status,
        "error": b.error,
        "target_path": b.target_path,
        "size": b.size,
        "sha256": b.sha256,
        "validation": manifest.get("validation"),
        "created_at": iso(b.created_at),
        "finished_at": iso(b.finished_at),
    }


def model_version_detail(mv: ModelVersion) -> dict[str, Any]:
    return model_version(mv) | {"bundles": [bundle(b) for b in mv.bundles]}


def device_summary(d: Device) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "profile": d.profile,
        "target": d.target,
        "labels": d.labels or {},
        "online": d.online,
        "last_seen": iso(d.last_seen),
        "state": "REVOKED" if d.revoked_at is not None else d.state,
        "revoked_at": iso(d.revoked_at),
        "active": d.active,
        "desired_generation": d.desired_generation,
        "reported_generation": d.reported_generation,
        "error": reported_error(d.error),
        "inference_url": d.inference_url,
        "latency_p95_ms": latency_p95_ms(d.telemetry),
        "telemetry_at": iso(d.telemetry_at),
    }


def latency_p95_ms(telemetry: Any) -> float | None:
    """The p95 latency of a device's last telemetry (``latency.p95_ms``), ``None`` without one.
    Telemetry is stored as sent, so anything else there is ignored."""
    latency = telemetry.get("latency") if isinstance(telemetry, dict) else None
    p95 = latency.get("p95_ms") if isinstance(latency, dict) else None
    return float(p95) if isinstance(p95, int | float) and not isinstance(p95, bool) else None


def device_detail(d: Device) -> dict[str, Any]:
    return device_summary(d) | {
        "facts": d.facts or {},
        "desired": None if d.desired is None else d.desired.to_dict(),
        "reported": None if d.reported is None else d.reported.to_dict(),
        "telemetry": d.telemetry,
        "telemetry_at": iso(d.telemetry_at),
        "registered_at": iso(d.registered_at),
        "certificate": {"serial": d.cert_serial, "not_after": iso(d.cert_not_after)},
    }


def group(g: Group, members: Sequence[str]) -> dict[str, Any]:
    return {
        "name": g.name,
        "devices": g.device_ids,
        "selector": g.selector or {},
        "members": list(members),
        "serving": (g.serving or ServingPolicy()).to_dict(),
        "offload": (g.offload or GroupOffload()).to_dict(),
        "created_at": iso(g.created_at),
    }


def rollout_view(dep: Deployment) -> dict[str, Any]:
    """A deployment's rollout: its spec (defaults filled in), the wave open (1-based; 0: none yet)
    of how many, devices per wave per state, whether it rolls back, and the gates' last verdict
    and figures."""
    spec = dep.spec or RolloutSpec()
    waves = {int(w): dict(c) for w, c in (dep.counts or {}).items()}
    return {
        # Every field, defaults included (to_dict leaves defaults out), so readers need not know them.
        "spec": {**dataclasses.asdict(spec), "waves": [str(w) for w in spec.waves]},
        "wave": (dep.wave if dep.wave is not None else -1) + 1,
        "waves": dep.waves or 0,
        "wave_counts": [waves.get(i, {}) for i in range(dep.waves or 0)],
        "wave_ended_at": dep.wave_ended_at,
        "rollback": bool(dep.rollback),
        "gate": dep.gate,
    }


def deployment_summary(dep: Deployment, by_state: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A deployment without its device rows: model, group, state, rollout progress and counts
    (``by_state``: devices per state as counted from its rows; else from its per-wave counts)."""
    totals: dict[str, int] = dict(by_state or {})
    if by_state is None:
        for per_wave in (dep.counts or {}).values():
            for k, n in per_wave.items():
                totals[k] = totals.get(k, 0) + int(n)
    return {
        "id": dep.id,
        "model": dep.model_version.ref,
        "group": dep.group_name,
        "state": dep.state,
        "error": dep.error,
        "created_at": iso(dep.created_at),
        "updated_at": iso(dep.updated_at),
        "counts": {st.value: totals.get(st.value, 0) for st in DeviceRolloutState},
        "rollout": rollout_view(dep),
    }


def deployment(
    s: Session,
    dep: Deployment,
    profiles: Mapping[str, DeviceProfile],
    limit: int = 1000,
    offset: int = 0,
    state: str | None = None,
) -> dict[str, Any]:
    """The deployment with its compiles (one per build its devices need), its rollout and a page
    of its device rows (by device id; ``state`` filters), with ``devices_total`` matching."""
    mv = dep.model_version
    base = select(DeploymentDevice).where(DeploymentDevice.deployment_id == dep.id)
    if state is not None:
        base = base.where(DeploymentDevice.state == state)
    page = list(s.scalars(base.order_by(DeploymentDevice.device_id).offset(offset).limit(limit)))
    # The builds it needs: one per profile among its devices (a GROUP BY, not every row).
    profile_names = s.scalars(
        select(Device.profile)
        .join(DeploymentDevice, DeploymentDevice.device_id == Device.device_id)
        .where(DeploymentDevice.deployment_id == dep.id)
        .distinct()
    )
    keys = {}
    for name in profile_names:
        prof = profiles.get(name)
        if prof is not None:
            k = build_key(prof)
            keys[(k.target, k.precision, k.settings_key)] = k
    compile_rows = []
    for _, k in sorted(keys.items()):
        b = find_bundle(s, mv.id, k)
        compile_rows.append(
            {
                "target": k.target,
                "precision": k.precision,
                "settings": k.settings_key,
                "status": b.status if b is not None else "pending",
                "error": b.error if b is not None else None,
            }
        )
    rows = [
        {
            "device_id": dd.device_id,
            "state": dd.state,
            "wave": None if dd.wave is None else dd.wave + 1,
            "active": dd.active,
            "error": reported_error(dd.error),
            "generation": dd.generation,
            "updated_at": iso(dd.updated_at),
        }
        for dd in page
    ]
    by_state = dict(
        s.execute(
            select(DeploymentDevice.state, func.count())
            .where(DeploymentDevice.deployment_id == dep.id)
            .group_by(DeploymentDevice.state)
        ).all()
    )
    total = by_state.get(state, 0) if state is not None else sum(by_state.values())
    return {
        **deployment_summary(dep, {k: int(v) for k, v in by_state.items()}),
        "compile": compile_rows,
        "devices": rows,
        "devices_total": int(total),
    }


def operator_token(t: OperatorToken, now: datetime) -> dict[str, Any]:
    """A token without its secret (which is never stored); ``state``: active, expired or revoked."""
    return {
        "name": t.name,
        "role": t.role,
        "state": token_state(t, now),
        "created_at": iso(t.created_at),
        "expires_at": iso(t.expires_at),
        "revoked_at": iso(t.revoked_at),
    }


def audit_entry(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at),
        "actor": e.actor,
        "role": e.role,
        "method": e.method,
        "path": e.path,
        "action": e.action,
        "target": e.target,
        "client": e.client,
        "status": e.status,
    }
