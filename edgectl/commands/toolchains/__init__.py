import typer

from edgectl.commands.toolchains.install import install
from edgectl.commands.toolchains.ls import ls

toolchains = typer.Typer(
    help="Converter toolchains kept in their own virtual environments (e.g. onnx2tf for tflite-arm).",
    no_args_is_help=True,
)
toolchains.command("ls")(ls)
toolchains.command("install")(install)
