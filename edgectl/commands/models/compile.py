import time
from typing import Annotated, Any

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.models import model_detail


def compile_ahead(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="NAME:VERSION", help="A pushed model version, e.g. digits:1.")
    ],
    profile: Annotated[
        list[str], typer.Option("--profile", "-p", help="A device profile to build for (repeatable).")
    ],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every build is ready or failed.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds.", min=0)
    ] = 900,
    output: Output = None,
) -> None:
    """Compile a pushed model on the fleet server ahead of a rollout.

    The server builds one bundle per target setting the profiles need (reusing builds it has), so
    a later `edgectl deploy` starts downloading at once. Exit status with --wait: 0 when every
    build is ready, 1 when one failed (the reason is printed), 3 on timeout.

    Example

        edgectl models compile digits:1 --profile x86-64-avx2 --profile raspberry-pi-5 --wait
    """
    app = Application.from_context(ctx, output)
    name, sep, version = model.partition(":")
    if not (name and sep and version):
        raise typer.BadParameter(f"{model!r} is not NAME:VERSION", param_hint="NAME:VERSION")
    detail = app.api.compile_ahead(name, version, profile)
    deadline = time.monotonic() + timeout
    with app.terminal.status(f"compiling {model}…") as update:
        while wait and _open(detail) and time.monotonic() < deadline:
            update(
                f"compiling {model}: " + ", ".join(f"{b['target']} {b['status']}" for b in detail["bundles"])
            )
            time.sleep(1.0)
            detail = app.api.get_model(name, version)
    app.display(detail, model_detail)
    if not wait:
        return
    failed = [b for b in detail.get("bundles", []) if b.get("status") == "failed"]
    if failed:
        app.abort("; ".join(str(b.get("error")) for b in failed))
    if _open(detail):
        app.abort(f"builds of {model} not done after {timeout:g}s", 3)


def _open(detail: dict[str, Any]) -> bool:
    return any(b.get("status") in ("pending", "compiling") for b in detail.get("bundles", []))
