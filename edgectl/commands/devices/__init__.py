import typer

from edgectl.commands.devices.enroll_token import enroll_token
from edgectl.commands.devices.ls import ls
from edgectl.commands.devices.revoke import revoke
from edgectl.commands.devices.show import show

devices = typer.Typer(help="Devices enrolled with the fleet server.", no_args_is_help=True)
devices.command("ls")(ls)
devices.command("show")(show)
devices.command("revoke")(revoke)
devices.add_typer(enroll_token, name="enroll-token")
