from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import deployments_table


def ls(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.", min=1, max=1000)] = 50,
    output: Output = None,
) -> None:
    """List rollouts, newest first, with their state, wave and device counts.

    Example

        edgectl rollouts ls
        edgectl rollouts ls -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_deployments(limit), deployments_table)
