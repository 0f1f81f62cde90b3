import typer

from edgectl.commands.rollouts.act import abort, pause, resume, rollback
from edgectl.commands.rollouts.ls import ls
from edgectl.commands.rollouts.status import status

rollouts = typer.Typer(
    help="Rollouts (deployments) of model versions to device groups: list, follow, pause, resume, "
    "abort, roll back.",
    no_args_is_help=True,
)
rollouts.command("ls")(ls)
rollouts.command("status")(status)
rollouts.command("pause")(pause)
rollouts.command("resume")(resume)
rollouts.command("abort")(abort)
rollouts.command("rollback")(rollback)
