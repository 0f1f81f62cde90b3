"""Building blocks shared by the views: tables, cells, sizes, times and state colours."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "HEALTHY": "green",
    "SUCCEEDED": "green",
    "ready": "green",
    "COMMITTED": "green",
    "FAILED": "red",
    "failed": "red",
    "TIMED_OUT": "red",
    "ROLLED_BACK": "yellow",
    "SUPERSEDED": "dim",
    "PENDING": "dim",
    "pending": "dim",
}


def table(*columns: str, title: str | None = None) -> Table:
    """A listing table. Cells that don't fit wrap rather than lose their end to an ellipsis: ids,
    paths and error messages are only useful whole."""
    t = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    for column in t.columns:
        column.overflow = "fold"
    return t


def cell(value: Any, style: str = "") -> Text:
    """A table cell for any JSON value: ``-`` for nothing, compact JSON for lists and mappings."""
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, bool):
        return Text("yes" if value else "no", style=style)
    if isinstance(value, dict | list):
        return Text(json.dumps(value, separators=(",", ":"), default=str), style=style)
    return Text(str(value), style=style)


def state(value: Any) -> Text:
    return cell(value, STATE_STYLES.get(str(value), "yellow" if value else ""))


def size(n: Any) -> str:
    """Bytes in the largest unit that keeps the number at or above 1 (binary units)."""
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def when(value: Any) -> str:
    """A timestamp as the server sent it: epoch seconds become UTC ISO, strings pass through."""
    if value is None or value == "":
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def short_hash(value: Any, n: int = 12) -> str:
    return str(value)[:n] if value else "-"


def error_text(error: Any) -> str:
    """``{"code", "message"}`` or a plain string, as one line."""
    if not error:
        return ""
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return f"{code}: {message}" if code and message else str(message or code or "")
    return str(error)


def fields(rows: list[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column key/value table."""
    t = Table(show_header=False, box=box.SIMPLE, title=title, title_justify="left", title_style="bold")
    t.add_column(style="bold")
    t.add_column()
    for key, value in rows:
        t.add_row(key, value if isinstance(value, Text) else cell(value))
    return t
