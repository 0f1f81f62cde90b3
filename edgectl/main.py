"""The ``edgectl`` entry point: the root command, its global options, and the one place where
edgectl's own errors become an error line and a non-zero exit."""

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from edgectl.app import Application
from edgectl.commands import register
from edgectl.errors import EdgectlError
from edgectl.options import OUTPUT_HELP, OutputFormat
from edgectl.terminal import Terminal


class _Root(TyperGroup):
    """Turns an :class:`EdgectlError` raised anywhere below into ``app.abort(message)``."""

    def invoke(self, ctx: Any) -> Any:  # a typer.Context; Any because the base names typer's vendored click
        try:
            return super().invoke(ctx)
        except EdgectlError as exc:
            app = ctx.find_object(Application)
            if app is None:  # pragma: no cover - the root callback always makes one
                raise
            app.abort(str(exc))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        Terminal().show(f"edgectl {version('edgefleet')}")
        raise typer.Exit()


cli = typer.Typer(
    name="edgectl",
    cls=_Root,
    epilog="Start with `edgectl profiles ls`, then `edgectl compile model.onnx --profile x86-64-avx2`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,  # locals would include the API token
)


@cli.callback()
def main(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            "-s",
            help="Fleet server URL.",
            show_default="$EDGEFLEET_SERVER, the config file, or http://127.0.0.1:8080",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="API token.", show_default="$EDGEFLEET_TOKEN or the config file"),
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help=OUTPUT_HELP)] = OutputFormat.TABLE,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """EdgeFleet operator CLI: compile an ONNX model for edge devices and roll it out to a fleet.

    Settings come from the flags, then $EDGEFLEET_SERVER and $EDGEFLEET_TOKEN, then the config
    file ~/.config/edgefleet/edgectl.yaml (or $EDGEFLEET_CONFIG) with `server:` and `token:` keys.

    Example

        edgectl compile model.onnx --profile raspberry-pi-5 --calibration cal.npz
        edgectl -s http://fleet:8080 models push model.onnx --name digits --version 1
        edgectl deploy digits:1 --group lab --wait
    """
    app = Application(Terminal(), server=server, token=token, output=output)
    ctx.obj = app
    ctx.call_on_close(app.close)


register(cli)


def run() -> None:
    cli()
