"""Devices as ``GET /api/v1/devices`` and ``GET /api/v1/devices/{id}`` return them."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edgectl.views._cells import cell, error_text, fields, state, table, when


def online(value: Any) -> Text:
    if value is None:
        return cell(None)
    return Text("online", style="green") if value else Text("offline", style="red")


def generations(d: dict[str, Any]) -> str:
    desired, reported = d.get("desired_generation"), d.get("reported_generation")
    if desired is None and reported is None:
        return "-"
    return f"{'-' if reported is None else reported}/{'-' if desired is None else desired}"


def devices_table(devices: list[dict[str, Any]]) -> Table:
    t = table("DEVICE", "PROFILE", "TARGET", "STATUS", "STATE", "ACTIVE", "GEN", "LAST SEEN", "ERROR")
    for d in devices:
        t.add_row(
            cell(d.get("device_id"), "bold"),
            cell(d.get("profile")),
            cell(d.get("target")),
            online(d.get("online")),
            state(d.get("state")),
            cell(d.get("active")),
            cell(generations(d)),
            cell(when(d.get("last_seen"))),
            cell(error_text(d.get("error")), "red"),
        )
    return t


def device_detail(d: dict[str, Any]) -> RenderableType:
    labels = d.get("labels") or {}
    rows: list[tuple[str, Any]] = [
        ("device", Text(str(d.get("device_id")), style="bold")),
        ("profile", d.get("profile")),
        ("target", d.get("target")),
        ("status", online(d.get("online"))),
        ("last seen", when(d.get("last_seen"))),
        ("state", state(d.get("state"))),
        ("active", d.get("active")),
        ("generation", f"{generations(d)} (reported/desired)"),
        ("labels", ", ".join(f"{k}={v}" for k, v in labels.items()) or None),
        ("inference", d.get("inference_url")),
        ("error", Text(error_text(d.get("error")), style="red") if d.get("error") else None),
    ]
    parts: list[RenderableType] = [fields(rows)]
    for key in ("facts", "desired", "reported"):
        value = d.get(key)
        if isinstance(value, dict) and value:
            parts.append(fields(sorted(value.items()), title=key))
    return Group(*parts)
