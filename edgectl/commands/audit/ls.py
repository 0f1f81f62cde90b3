from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.audit import audit_table


def ls(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="Entries to show.")] = 50,
    before: Annotated[
        int | None,
        typer.Option(
            "--before",
            metavar="ID",
            min=1,
            help="Only entries older than this id (the next page).",
            show_default=False,
        ),
    ] = None,
    output: Output = None,
) -> None:
    """List the audit log, newest first: when, who (token and role), what (method, path, action,
    target), from where, and the answer's status. Refused calls are there too.

    Example

        edgectl audit ls --limit 20
        edgectl audit ls --before 120 -o json
    """
    app = Application.from_context(ctx, output)
    app.display(app.api.list_audit(limit, before), audit_table)
