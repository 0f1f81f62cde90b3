import typer

from edgectl.app import Application
from edgectl.extras import needs_extra
from edgectl.options import Output
from edgectl.views.toolchains import status_dict, toolchains_table


def ls(ctx: typer.Context, output: Output = None) -> None:
    """List the converter toolchains, whether each is installed, and its key package versions.

    Example

        edgectl toolchains ls
        edgectl toolchains ls -o json
    """
    app = Application.from_context(ctx, output)
    with needs_extra(app, "compile"):
        from compilers import CompileError, toolchains

    try:
        statuses = [status_dict(toolchains.status(name)) for name in toolchains.known_toolchains()]
    except CompileError as exc:
        app.abort(str(exc))
    app.display(statuses, toolchains_table)
