import typer

from edgectl.commands.audit.ls import ls

audit = typer.Typer(
    help="The fleet server's append-only audit log of mutating calls (admin only).", no_args_is_help=True
)
audit.command("ls")(ls)
