import re
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views._cells import fields

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``7d`` → seconds. Raises ``typer.BadParameter``."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 1h or 7d", param_hint="--expires")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _labels(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--labels")
        out[key] = value
    return out


def token_view(t: dict[str, Any]) -> RenderableType:
    labels = ", ".join(f"{k}={v}" for k, v in (t.get("labels") or {}).items())
    return fields(
        [
            ("token", t.get("token")),
            ("group", t.get("group")),
            ("labels", labels or None),
            ("uses", t.get("uses")),
            ("expires", t.get("expires_at")),
            ("start a device with", "edge-agent ... --enroll-token <token>  (shown once; keep it secret)"),
        ]
    )


def create(
    ctx: typer.Context,
    group: Annotated[
        str, typer.Option("--group", "-g", help="The group enrolled devices join (must exist).")
    ],
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--labels", "-l", metavar="KEY=VALUE", help="A label enrolled devices get (repeatable)."
        ),
    ] = None,
    expires: Annotated[
        str, typer.Option("--expires", help="How long the token is good for: 30m, 1h, 7d.")
    ] = "1h",
    uses: Annotated[int, typer.Option("--uses", min=1, help="How many devices may enroll with it.")] = 1,
    output: Output = None,
) -> None:
    """Create an enrollment token (admin): a device started with it makes its key, sends a CSR and
    gets its certificate. The server keeps only the token's hash; it is shown once.

    Example

        edgectl devices enroll-token create --group lab --labels site=kitchen --expires 1h --uses 5
    """
    app = Application.from_context(ctx, output)
    token = app.api.create_enroll_token(group, _labels(labels or []), parse_duration(expires), uses)
    app.display(token, token_view)


enroll_token = typer.Typer(help="Enrollment tokens for new devices (admin).", no_args_is_help=True)
enroll_token.command("create")(create)
