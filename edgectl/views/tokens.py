"""Operator tokens as ``/api/v1/tokens`` returns them (the secret only in a create's answer)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from edgectl.views._cells import cell, fields, table, when

STATE_STYLES = {"active": "green", "expired": "yellow", "revoked": "red"}


def _state(value: Any) -> Text:
    return cell(value, STATE_STYLES.get(str(value), ""))


def tokens_table(tokens: list[dict[str, Any]]) -> Table:
    t = table("NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "REVOKED")
    for tok in tokens:
        t.add_row(
            cell(tok.get("name"), "bold"),
            cell(tok.get("role")),
            _state(tok.get("state")),
            cell(when(tok.get("created_at"))),
            cell(when(tok.get("expires_at")) if tok.get("expires_at") else "never"),
            cell(when(tok.get("revoked_at")) if tok.get("revoked_at") else None),
        )
    return t


def token_detail(tok: dict[str, Any]) -> RenderableType:
    return fields(
        [
            ("token", tok.get("name")),
            ("role", tok.get("role")),
            ("state", _state(tok.get("state"))),
            ("created", when(tok.get("created_at"))),
            ("expires", when(tok.get("expires_at")) if tok.get("expires_at") else "never"),
            ("revoked", when(tok.get("revoked_at")) if tok.get("revoked_at") else None),
        ]
    )


def created_token(tok: dict[str, Any]) -> RenderableType:
    """The detail plus the secret, on a line of its own so it can be copied whole."""
    t = token_detail(tok)
    assert isinstance(t, Table)
    t.add_row("secret", Text(str(tok.get("token", "")), style="bold"))
    return t
