import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.models import models_table


def ls(ctx: typer.Context, output: Output = None) -> None:
    """List the model versions stored on the fleet server.

    Example

        edgectl models ls
        edgectl models ls -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_models(), models_table)
