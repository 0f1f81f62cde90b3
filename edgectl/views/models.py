"""Model versions as ``GET /api/v1/models`` and ``POST /api/v1/models`` return them."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from edgectl.views._cells import cell, fields, short_hash, size, table, when


def models_table(models: list[dict[str, Any]]) -> Table:
    t = table("NAME", "VERSION", "SIZE", "SHA256", "CREATED")
    for m in models:
        t.add_row(
            cell(m.get("name"), "bold"),
            cell(m.get("version")),
            cell(size(m.get("size"))),
            cell(short_hash(m.get("sha256"))),
            cell(when(m.get("created_at"))),
        )
    return t


def _tensors(specs: Any) -> str:
    if not isinstance(specs, list):
        return "-"
    return ", ".join(
        f"{t.get('name')} {t.get('dtype', '')}{t.get('shape', '')}" for t in specs if isinstance(t, dict)
    )


def model_detail(m: dict[str, Any]) -> RenderableType:
    rows: list[tuple[str, Any]] = [
        ("model", f"{m.get('name')}:{m.get('version')}"),
        ("size", size(m.get("size"))),
        ("sha256", m.get("sha256")),
        ("created", when(m.get("created_at"))),
        ("inputs", _tensors(m.get("inputs"))),
        ("outputs", _tensors(m.get("outputs"))),
    ]
    parts: list[RenderableType] = [fields(rows)]
    bundles = m.get("bundles")
    if bundles:
        t = table("TARGET", "PRECISION", "STATUS", "SIZE", "ERROR", title="bundles")
        for b in bundles:
            t.add_row(
                cell(b.get("target")),
                cell(b.get("precision")),
                cell(b.get("status")),
                cell(size(b.get("size"))),
                cell(b.get("error"), "red"),
            )
        parts.append(t)
    return Group(*parts)
