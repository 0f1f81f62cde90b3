import typer

from edgectl.commands.groups.create import create
from edgectl.commands.groups.ls import ls
from edgectl.commands.groups.set import set_policy

groups = typer.Typer(help="Device groups: the unit a model is deployed to.", no_args_is_help=True)
groups.command("create")(create)
groups.command("ls")(ls)
groups.command("set")(set_policy)
