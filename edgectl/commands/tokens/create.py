from enum import StrEnum
from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.durations import parse_duration
from edgectl.options import Output
from edgectl.views.tokens import created_token


class Role(StrEnum):
    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"


def _lifetime(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires") from None


def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", metavar="NAME", help="The token's name (unique).")],
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            "-r",
            help="viewer reads; deployer also pushes, deploys and edits group policies; admin also "
            "manages tokens, keys, enrollment and revocation.",
        ),
    ],
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            metavar="DURATION",
            help="Lifetime, e.g. 30d, 12h, 90m (default: never expires).",
            show_default=False,
        ),
    ] = None,
    output: Output = None,
) -> None:
    """Make an operator token. Its secret is printed once, now: store it (the server keeps only
    its hash).

    Example

        edgectl tokens create --name ci --role deployer --expires 90d
        edgectl tokens create --name dashboard --role viewer -o json
    """
    app = Application.from_context(ctx, output)
    token = app.api.create_token(name, role.value, _lifetime(expires))
    if not app.json_output:
        app.terminal.success(f"created token {token.get('name', name)} ({token.get('role', role.value)})")
        app.terminal.warning("the secret below is shown only now: store it (use it as EDGEFLEET_TOKEN)")
    app.display(token, created_token)
