from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.models import model_detail


def show(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="NAME:VERSION", help="A pushed model version, e.g. digits:1.")
    ],
    output: Output = None,
) -> None:
    """Show a model version: its inputs and outputs and the bundles compiled from it.

    Example

        edgectl models show digits:1 -o json
    """
    app = Application.from_context(ctx, output)
    name, sep, version = model.partition(":")
    if not (name and sep and version):
        raise typer.BadParameter(f"{model!r} is not NAME:VERSION", param_hint="NAME:VERSION")
    app.display(app.api.get_model(name, version), model_detail)
