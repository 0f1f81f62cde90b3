"""Database rows → the JSON shapes of docs/api.md. Times are ISO 8601 UTC strings; desired and
reported states appear as they go on the wire."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.contracts import ReportedError
from agent.contracts.policy import ServingPolicy
from device_profiles import DeviceProfile
from fleet_server.build_settings import build_key
from fleet_server.db import Bundle, Deployment, Device, Group, ModelVersion
from fleet_server.queries import find_bundle
from fleet_server.rollout import GroupOffload, counts
from fleet_server.states import DeviceRolloutState


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
    }


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


def deployment(s: Session, dep: Deployment, profiles: Mapping[str, DeviceProfile]) -> dict[str, Any]:
    """The deployment with its compiles (one per build its devices need) and its devices."""
    mv = dep.model_version
    device_ids = [dd.device_id for dd in dep.devices]
    devices = {d.device_id: d for d in s.scalars(select(Device).where(Device.device_id.in_(device_ids)))}
    keys = {}
    for device_id in device_ids:
        dev = devices.get(device_id)
        prof = profiles.get(dev.profile) if dev is not None else None
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
            "active": dd.active,
            "error": reported_error(dd.error),
            "generation": dd.generation,
            "updated_at": iso(dd.updated_at),
        }
        for dd in dep.devices
    ]
    return {
        "id": dep.id,
        "model": mv.ref,
        "group": dep.group_name,
        "state": dep.state,
        "error": dep.error,
        "created_at": iso(dep.created_at),
        "updated_at": iso(dep.updated_at),
        "compile": compile_rows,
        "devices": rows,
        "counts": counts(DeviceRolloutState(dd.state) for dd in dep.devices),
    }
