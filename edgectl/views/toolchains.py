"""Converter toolchains, from ``compilers.toolchains.ToolchainStatus``."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from edgectl.views._cells import cell, fields, table


def status_dict(status: Any) -> dict[str, Any]:
    """A ``ToolchainStatus`` as JSON-ready data."""
    return {
        "name": status.name,
        "installed": status.installed,
        "path": str(status.path),
        "versions": dict(status.versions),
        "problem": status.problem,
        "external": status.external,
    }


def _installed(s: dict[str, Any]) -> Text:
    if not s["installed"]:
        return Text("no", style="red")
    return Text("yes", style="yellow" if s.get("problem") else "green")


def _versions(s: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in s.get("versions", {}).items())


def toolchains_table(statuses: list[dict[str, Any]]) -> Table:
    t = table("NAME", "INSTALLED", "VERSIONS", "PATH", "PROBLEM")
    for s in statuses:
        path = s["path"] + (" (from the environment)" if s.get("external") else "")
        t.add_row(
            cell(s["name"], "bold"),
            _installed(s),
            cell(_versions(s)),
            cell(path),
            cell(s.get("problem"), "red"),
        )
    return t


def toolchain_detail(s: dict[str, Any]) -> RenderableType:
    return fields(
        [
            ("toolchain", s["name"]),
            ("installed", _installed(s)),
            ("path", s["path"]),
            ("versions", _versions(s)),
            ("problem", s.get("problem")),
        ]
    )
