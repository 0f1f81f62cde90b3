from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.extras import needs_extra
from edgectl.options import Output
from edgectl.views.toolchains import status_dict, toolchain_detail


def install(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The toolchain (see `edgectl toolchains ls`), e.g. tflite.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Reinstall even when it is installed and sound.")
    ] = False,
    output: Output = None,
) -> None:
    """Install a converter toolchain into its own virtual environment (needs the package index).

    The new environment replaces the old one in a single step only once it works, so a failed
    install leaves the previous toolchain usable.

    Example

        edgectl toolchains install tflite
        edgectl toolchains install tflite --force
    """
    app = Application.from_context(ctx, output)
    with needs_extra(app, "compile"):
        from compilers import CompileError, toolchains

    term = app.terminal
    with term.status(f"installing the {name} toolchain") as spinner:

        def progress(message: str) -> None:
            spinner(message.strip())
            if not message.startswith(" ") and not app.json_output:  # indented lines are pip's own
                term.info(message)

        try:
            status = toolchains.install(name, progress=progress, force=force)
        except CompileError as exc:
            app.abort(str(exc))
    if app.json_output:
        term.json(status_dict(status))
    elif status.problem:
        app.abort(f"the {name} toolchain has a problem: {status.problem}")
    else:
        term.show(toolchain_detail(status_dict(status)))
