"""Groups as ``GET /api/v1/groups`` and ``POST /api/v1/groups`` return them."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table

from edgectl.views._cells import cell, fields, table

MAX_LISTED = 8


def _names(items: Any) -> str:
    if not items:
        return ""
    names = [str(i.get("device_id", i)) if isinstance(i, dict) else str(i) for i in items]
    more = len(names) - MAX_LISTED
    return ", ".join(names[:MAX_LISTED]) + (f" (+{more})" if more > 0 else "")


def _selector(sel: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in (sel or {}).items())


def _members(members: Any) -> str:
    if members is None:
        return ""
    return f"{len(members)}: {_names(members)}" if members else "0"


def groups_table(groups: list[dict[str, Any]]) -> Table:
    t = table("NAME", "DEVICES", "SELECTOR", "MEMBERS")
    for g in groups:
        t.add_row(
            cell(g.get("name"), "bold"),
            cell(_names(g.get("devices"))),
            cell(_selector(g.get("selector"))),
            cell(_members(g.get("members"))),
        )
    return t


def group_detail(g: dict[str, Any]) -> RenderableType:
    return fields(
        [
            ("group", g.get("name")),
            ("devices", _names(g.get("devices"))),
            ("selector", _selector(g.get("selector"))),
            ("members", _members(g.get("members"))),
        ]
    )
