import typer

from edgectl.commands.models.ls import ls
from edgectl.commands.models.push import push

models = typer.Typer(help="Source models stored on the fleet server.", no_args_is_help=True)
models.command("push")(push)
models.command("ls")(ls)
