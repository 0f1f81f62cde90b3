"""Groups as ``GET``/``POST /api/v1/groups`` and ``PATCH /api/v1/groups/NAME`` return them, with
their serving and offload policies."""

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


def _serving(serving: Any) -> str:
    s = serving or {}
    parts = []
    if s.get("latency_budget_ms") is not None:
        parts.append(f"budget {s['latency_budget_ms']:g} ms")
    if s.get("max_batch_size") is not None:
        parts.append(f"batch ≤{s['max_batch_size']}")
    if s.get("max_queue_delay_ms") is not None:
        parts.append(f"queue delay {s['max_queue_delay_ms']:g} ms")
    if s.get("intra_op_threads") is not None:
        parts.append(f"{s['intra_op_threads']} threads")
    return ", ".join(parts)


def _offload(offload: Any) -> str:
    o = offload or {}
    if not o.get("enabled"):
        return ""
    where = o.get("endpoint_url") or "this server's cloud"
    share = o.get("budget")
    return where if share is None else f"{where} (≤{share:.0%})"


def groups_table(groups: list[dict[str, Any]]) -> Table:
    t = table("NAME", "DEVICES", "SELECTOR", "MEMBERS", "SERVING", "OFFLOAD")
    for g in groups:
        t.add_row(
            cell(g.get("name"), "bold"),
            cell(_names(g.get("devices"))),
            cell(_selector(g.get("selector"))),
            cell(_members(g.get("members"))),
            cell(_serving(g.get("serving"))),
            cell(_offload(g.get("offload"))),
        )
    return t


def group_detail(g: dict[str, Any]) -> RenderableType:
    return fields(
        [
            ("group", g.get("name")),
            ("devices", _names(g.get("devices"))),
            ("selector", _selector(g.get("selector"))),
            ("members", _members(g.get("members"))),
            ("serving", _serving(g.get("serving")) or "defaults"),
            ("offload", _offload(g.get("offload")) or "off"),
        ]
    )
