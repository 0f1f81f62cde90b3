import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.groups import groups_table


def ls(ctx: typer.Context, output: Output = None) -> None:
    """List device groups with their selectors and resolved members.

    Example

        edgectl groups ls
        edgectl groups ls -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_groups(), groups_table)
