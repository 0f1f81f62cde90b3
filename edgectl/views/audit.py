"""Audit log entries as ``GET /api/v1/audit`` returns them, newest first."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from edgectl.views._cells import cell, table, when


def _status(value: Any) -> Text:
    style = "green" if isinstance(value, int) and value < 400 else "red"
    return cell(value, style)


def _who(e: dict[str, Any]) -> str:
    return f"{e.get('actor')} ({e['role']})" if e.get("role") else str(e.get("actor"))


def audit_table(entries: list[dict[str, Any]]) -> Table:
    t = table("ID", "AT", "WHO", "ACTION", "TARGET", "CALL", "FROM", "STATUS")
    for e in entries:
        t.add_row(
            cell(e.get("id")),
            cell(when(e.get("at"))),
            cell(_who(e), "bold"),
            cell(e.get("action")),
            cell(e.get("target")),
            cell(f"{e.get('method')} {e.get('path')}"),
            cell(e.get("client")),
            _status(e.get("status")),
        )
    return t
