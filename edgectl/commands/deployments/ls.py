import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import deployments_table


def ls(ctx: typer.Context, output: Output = None) -> None:
    """List deployments, newest first, with their state and device counts.

    Example

        edgectl deployments ls
        edgectl deployments ls -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_deployments(), deployments_table)
