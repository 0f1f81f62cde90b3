"""Deployments as ``/api/v1/deployments`` returns them, and the live view of ``deploy --wait``."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edgectl.views._cells import cell, error_text, state, table, when

ORDER = ("HEALTHY", "INSTALLING", "DOWNLOADING", "NOTIFIED", "PENDING", "FAILED")


def counts_text(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return ""
    known = [s for s in ORDER if counts.get(s)]
    rest = sorted(s for s in counts if s not in ORDER and counts[s])
    return ", ".join(f"{counts[s]} {s}" for s in known + rest)


def deployments_table(deployments: list[dict[str, Any]]) -> Table:
    t = table("ID", "MODEL", "GROUP", "STATE", "DEVICES", "CREATED", "UPDATED")
    for d in deployments:
        t.add_row(
            cell(d.get("id"), "bold"),
            cell(d.get("model")),
            cell(d.get("group")),
            state(d.get("state")),
            cell(counts_text(d.get("counts"))),
            cell(when(d.get("created_at"))),
            cell(when(d.get("updated_at"))),
        )
    return t


def deployment_detail(d: dict[str, Any], elapsed: float | None = None) -> RenderableType:
    head = Text.assemble(
        ("deployment ", "bold"),
        (str(d.get("id")), "bold"),
        f"  {d.get('model')} → group {d.get('group')}  ",
        state(d.get("state")),
    )
    if elapsed is not None:
        head.append(f"  ({elapsed:.0f}s)", style="dim")
    parts: list[RenderableType] = [head]
    if d.get("error"):
        parts.append(Text(error_text(d.get("error")), style="red"))

    compiles = d.get("compile") or []
    if compiles:
        t = table("TARGET", "PRECISION", "COMPILE", "ERROR", title="compile")
        for c in compiles:
            t.add_row(
                cell(c.get("target")),
                cell(c.get("precision")),
                state(c.get("status")),
                cell(c.get("error"), "red"),
            )
        parts.append(t)

    devices = d.get("devices") or []
    t = table(
        "DEVICE",
        "STATE",
        "ACTIVE",
        "UPDATED",
        "ERROR",
        title=f"devices ({counts_text(d.get('counts')) or len(devices)})",
    )
    for dev in devices:
        t.add_row(
            cell(dev.get("device_id"), "bold"),
            state(dev.get("state")),
            cell(dev.get("active")),
            cell(when(dev.get("updated_at"))),
            cell(error_text(dev.get("error")), "red"),
        )
    parts.append(t)
    return Group(*parts)
