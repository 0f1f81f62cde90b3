import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.tokens import tokens_table


def ls(ctx: typer.Context, output: Output = None) -> None:
    """List operator tokens: name, role, state (active, expired, revoked), created and expiry
    times. Secrets are never shown again.

    Example

        edgectl tokens ls
        edgectl tokens ls -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_tokens(), tokens_table)
