import typer

from edgectl.commands.tokens.create import create
from edgectl.commands.tokens.ls import ls
from edgectl.commands.tokens.revoke import revoke

tokens = typer.Typer(
    help="Operator API tokens and their roles: viewer, deployer, admin (admin only).", no_args_is_help=True
)
tokens.command("create")(create)
tokens.command("ls")(ls)
tokens.command("revoke")(revoke)
