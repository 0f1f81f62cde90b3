from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import deployment_detail


def status(
    ctx: typer.Context,
    deployment_id: Annotated[
        str, typer.Argument(metavar="ID", help="The deployment id (see `edgectl deployments ls`).")
    ],
    output: Output = None,
) -> None:
    """Show one deployment: compile status per target and each device's rollout state.

    Example

        edgectl deployments status 7
        edgectl deployments status 7 -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.get_deployment(deployment_id), deployment_detail)
