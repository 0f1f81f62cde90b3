import typer

from edgectl.commands.models.compile import compile_ahead
from edgectl.commands.models.ls import ls
from edgectl.commands.models.push import push
from edgectl.commands.models.show import show

models = typer.Typer(help="Source models stored on the fleet server.", no_args_is_help=True)
models.command("push")(push)
models.command("ls")(ls)
models.command("show")(show)
models.command("compile")(compile_ahead)
