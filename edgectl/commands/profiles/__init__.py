import typer

from edgectl.commands.profiles.ls import ls
from edgectl.commands.profiles.show import show

profiles = typer.Typer(
    help="Device profiles: the kinds of device EdgeFleet compiles for.", no_args_is_help=True
)
profiles.command("ls")(ls)
profiles.command("show")(show)
