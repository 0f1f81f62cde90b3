import typer

from edgectl.commands.devices.ls import ls
from edgectl.commands.devices.show import show

devices = typer.Typer(help="Devices registered with the fleet server.", no_args_is_help=True)
devices.command("ls")(ls)
devices.command("show")(show)
