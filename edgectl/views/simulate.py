"""The view of a simulated fleet: devices by mode, update state, model and error."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from edgectl.views._cells import cell, state, table


def _counts(title: str, counts: dict[str, int], styled: bool = False) -> RenderableType:
    t = table(title, "devices", title=None)
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(state(key) if styled else cell(key), str(n))
    return t


def simulation(summary: dict[str, Any], elapsed: float | None = None) -> RenderableType:
    """The simulator's :meth:`~edgectl.simulate.Simulator.summary` as tables."""
    modes = ", ".join(f"{n} {m}" for m, n in sorted(summary.get("modes", {}).items()))
    msgs = summary.get("messages", {})
    n = summary.get("devices", 0)
    head = (
        f"{n} simulated device{'' if n == 1 else 's'} ({modes}), {summary.get('connected', 0)} connected; "
        f"{msgs.get('reports', 0)} reports, {msgs.get('telemetry', 0)} telemetry messages sent"
    )
    if elapsed is not None:
        head += f" ({elapsed:.0f}s)"
    parts: list[RenderableType] = [Text(head, style="bold")]
    parts.append(_counts("state", summary.get("states", {}), styled=True))
    parts.append(_counts("active model", summary.get("active", {})))
    if summary.get("errors"):
        parts.append(_counts("error", summary["errors"], styled=True))
    return Group(*parts)
