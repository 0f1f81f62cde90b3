"""Deployments as ``/api/v1/deployments`` returns them, and the live view of ``deploy --wait``."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edgectl.views._cells import cell, error_text, state, table, when

ORDER = ("HEALTHY", "INSTALLING", "DOWNLOADING", "NOTIFIED", "PENDING", "FAILED", "TIMED_OUT", "ROLLED_BACK")
# One character per device state in the wave bars.
BAR = {"HEALTHY": ("█", "green"), "INSTALLING": ("▓", "cyan"), "DOWNLOADING": ("▒", "blue"),
       "NOTIFIED": ("░", "blue"), "PENDING": ("·", "dim"), "FAILED": ("█", "red"),
       "TIMED_OUT": ("█", "yellow"), "ROLLED_BACK": ("█", "magenta")}  # fmt: skip


def counts_text(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return ""
    known = [s for s in ORDER if counts.get(s)]
    rest = sorted(s for s in counts if s not in ORDER and counts[s])
    return ", ".join(f"{counts[s]} {s}" for s in known + rest)


def wave_text(d: dict[str, Any]) -> str:
    r = d.get("rollout") or {}
    waves = r.get("waves") or 0
    return f"{r.get('wave', 0)}/{waves}" if waves else "-"


def deployment_line(d: dict[str, Any]) -> str:
    """One line: model, group, state, wave, counts."""
    return (
        f"{d.get('model')} → {d.get('group')}: {d.get('state')}, wave {wave_text(d)}"
        f"{', ' + counts_text(d.get('counts')) if counts_text(d.get('counts')) else ''}"
    )


def deployments_table(deployments: list[dict[str, Any]]) -> Table:
    t = table("ID", "MODEL", "GROUP", "STATE", "WAVE", "DEVICES", "CREATED", "UPDATED")
    for d in deployments:
        t.add_row(
            cell(d.get("id"), "bold"),
            cell(d.get("model")),
            cell(d.get("group")),
            state(d.get("state")),
            cell(wave_text(d)),
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

    rollout = d.get("rollout") or {}
    if rollout.get("waves"):
        parts.append(waves_table(rollout))
        gate = gates_text(rollout)
        if gate is not None:
            parts.append(gate)

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
    total = d.get("devices_total", len(devices))
    shown = f", {len(devices)} of {total} shown" if total > len(devices) else ""
    t = table(
        "DEVICE",
        "WAVE",
        "STATE",
        "ACTIVE",
        "UPDATED",
        "ERROR",
        title=f"devices ({counts_text(d.get('counts')) or len(devices)}{shown})",
    )
    for dev in devices:
        t.add_row(
            cell(dev.get("device_id"), "bold"),
            cell(dev.get("wave")),
            state(dev.get("state")),
            cell(dev.get("active")),
            cell(when(dev.get("updated_at"))),
            cell(error_text(dev.get("error")), "red"),
        )
    parts.append(t)
    return Group(*parts)


def waves_table(rollout: dict[str, Any]) -> Table:
    """One row per wave: its size, a bar of its devices by state, and the counts."""
    current = int(rollout.get("wave") or 0)
    t = table("WAVE", "DEVICES", "PROGRESS", "STATES", title="waves")
    for i, counts in enumerate(rollout.get("wave_counts") or [], start=1):
        n = sum(int(v) for v in counts.values())
        bar = Text()
        width = 30
        for st in ORDER:
            k = int(counts.get(st, 0))
            if k:
                ch, style = BAR.get(st, ("?", ""))
                bar.append(ch * max(1, round(width * k / max(n, 1))), style=style)
        marker = " ◀" if i == current else ""
        t.add_row(
            cell(f"{i}{marker}", "bold" if i == current else ""), cell(n), bar, cell(counts_text(counts))
        )
    return t


def gates_text(rollout: dict[str, Any]) -> Text | None:
    """The gates' last figures against their thresholds, and why a gate failed."""
    gate = rollout.get("gate") or {}
    spec = rollout.get("spec") or {}
    figures = gate.get("figures") or {}
    if not figures:
        return None
    out = Text("gates: ", style="bold")
    rate = figures.get("failure_rate")
    if rate is not None:
        limit = float(spec.get("max_failure_rate", 0))
        out.append(f"failures {float(rate):.0%} of {figures.get('executed', 0)} (max {limit:.0%})")
    thresholds = spec.get("gates") or {}
    for name, key, fmt in (
        ("error rate", "error_rate", "{:.1%}"),
        ("p95 x", "p95_regression", "{:.2f}"),
        ("offload", "offload_ratio", "{:.0%}"),
        ("PSI", "prediction_psi", "{:.3f}"),
    ):
        v = figures.get(key)
        if v is not None:
            bound = thresholds.get(f"max_{key}")
            out.append(f"; {name} {fmt.format(v)}" + (f" (max {bound:g})" if bound is not None else ""))
    for reason in gate.get("reasons") or []:
        out.append(f"\n  failed: {reason}", style="red")
    return out
