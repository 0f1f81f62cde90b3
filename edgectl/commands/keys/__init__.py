import typer

from edgectl.commands.keys.export import export
from edgectl.commands.keys.init import init
from edgectl.commands.keys.rotate import rotate

keys = typer.Typer(
    help="TUF signing keys: make them, show the public part, rotate them (local; no server needed).",
    no_args_is_help=True,
)
keys.command("init")(init)
keys.command("export")(export)
keys.command("rotate")(rotate)
