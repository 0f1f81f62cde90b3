"""Device profiles, from ``device_profiles.loader.profile_to_dict`` dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from edgectl.views._cells import cell, fields, table


def origin(source: str, builtin_dir: str) -> str:
    """``built-in`` for a profile shipped with EdgeFleet, else the file it came from."""
    return "built-in" if source and Path(source).parent == Path(builtin_dir) else source


def profiles_table(profiles: list[dict[str, Any]], builtin_dir: str) -> Table:
    t = table("NAME", "TARGET", "PRECISION", "CPU", "MEMORY", "RUNTIME", "BUDGET", "FROM")
    for p in profiles:
        cpu, rt = p["cpu"], p["runtime"]
        budget = p.get("latency_budget_ms")
        t.add_row(
            cell(p["name"], "bold"),
            cell(p["target"]),
            cell(p["precision"]),
            cell(f"{cpu['arch']} x{cpu['cores']}"),
            cell(f"{p['memory_mb']} MB"),
            cell(f"{rt['name']} {rt['version']}"),
            cell(None if budget is None else f"{budget:g} ms"),
            cell(origin(p.get("source", ""), builtin_dir)),
        )
    return t


def profile_detail(p: dict[str, Any], builtin_dir: str) -> RenderableType:
    cpu, rt, gpu = p["cpu"], p["runtime"], p.get("gpu")
    budget = p.get("latency_budget_ms")
    features = ", ".join(cpu.get("features") or [])
    rows: list[tuple[str, Any]] = [
        ("name", p["name"]),
        ("description", p.get("description")),
        ("target", p["target"]),
        ("precision", p["precision"]),
        ("cpu", f"{cpu['arch']}, {cpu['cores']} cores, {features or 'no features listed'}"),
        ("memory", f"{p['memory_mb']} MB"),
        (
            "runtime",
            f"{rt['name']} {rt['version']}" + (f" (fallback {rt['fallback']})" if rt.get("fallback") else ""),
        ),
        ("latency budget", None if budget is None else f"{budget:g} ms"),
    ]
    if gpu:
        rows.append(
            ("gpu", f"{gpu['name']}, compute {gpu['compute_capability']}, {gpu.get('dla_cores', 0)} DLA")
        )
    if p.get("jetpack"):
        rows.append(("jetpack", p["jetpack"]))
    rows.append(("from", origin(p.get("source", ""), builtin_dir)))
    return fields(rows)
