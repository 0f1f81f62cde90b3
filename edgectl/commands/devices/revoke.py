from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.devices import device_detail


def revoke(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The device to revoke.")],
    output: Output = None,
) -> None:
    """Revoke a device (admin): its certificates go on the broker's CRL and its connection is
    dropped; it can't connect, download or renew again, and enrolls again only with a new token.

    Example

        edgectl devices revoke pi5-kitchen
    """
    app = Application.from_context(ctx, output)
    answer = app.api.revoke_device(device_id)
    app.display(answer["device"], device_detail)
