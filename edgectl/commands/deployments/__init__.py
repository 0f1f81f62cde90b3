import typer

from edgectl.commands.deployments.ls import ls
from edgectl.commands.deployments.status import status

deployments = typer.Typer(help="Rollouts of model versions to device groups.", no_args_is_help=True)
deployments.command("ls")(ls)
deployments.command("status")(status)
