from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.devices import device_detail


def show(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The device id (see `edgectl devices ls`).")],
    output: Output = None,
) -> None:
    """Show one device: its facts, the state the server wants and the state it reports.

    Example

        edgectl devices show pi5-kitchen
        edgectl devices show pi5-kitchen -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.get_device(device_id), device_detail)
