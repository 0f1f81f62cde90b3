from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.devices import devices_table


def ls(
    ctx: typer.Context,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Only the members of this group.")
    ] = None,
    output: Output = None,
) -> None:
    """List devices: profile, online, update state and the model each one runs.

    Example

        edgectl devices ls
        edgectl devices ls --group lab -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_devices(group), devices_table)
