from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.tokens import token_detail


def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The token's name (see `edgectl tokens ls`).")],
    output: Output = None,
) -> None:
    """Revoke an operator token: from now on the server answers it with 401. Its name stays
    taken, so the audit log's names keep meaning one token.

    Example

        edgectl tokens revoke ci
    """
    app = Application.from_context(ctx, output)
    token = app.api.revoke_token(name)
    if not app.json_output:
        app.terminal.success(f"revoked token {token.get('name', name)}")
    app.display(token, token_detail)
