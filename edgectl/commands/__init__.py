"""Wires every edgectl command onto the root; nothing else lives here.

Groups are sub-packages (one command per file); single commands are modules. Local commands
(``compile``, ``profiles``, ``toolchains``) work without a fleet server; the rest talk to it.
"""

import typer

from edgectl.commands.audit import audit
from edgectl.commands.compile import compile_
from edgectl.commands.deploy import deploy
from edgectl.commands.devices import devices
from edgectl.commands.groups import groups
from edgectl.commands.keys import keys
from edgectl.commands.models import models
from edgectl.commands.profiles import profiles
from edgectl.commands.quickstart import quickstart
from edgectl.commands.rollouts import rollouts
from edgectl.commands.simulate import simulate
from edgectl.commands.tokens import tokens
from edgectl.commands.toolchains import toolchains


def register(root: typer.Typer) -> None:
    # Local: nothing here needs a fleet server.
    root.command("compile")(compile_)
    root.add_typer(profiles, name="profiles")
    root.add_typer(toolchains, name="toolchains")
    root.add_typer(keys, name="keys")

    # Thin clients of the fleet server's REST API (docs/api.md).
    root.add_typer(models, name="models")
    root.add_typer(devices, name="devices")
    root.add_typer(groups, name="groups")
    root.command("deploy")(deploy)
    root.add_typer(rollouts, name="rollouts")
    # The name the rollouts had before staged rollouts; kept so scripts go on working.
    root.add_typer(rollouts, name="deployments", hidden=True)

    # Operators: API tokens with roles, and the audit log (admin).
    root.add_typer(tokens, name="tokens")
    root.add_typer(audit, name="audit")

    # Local fleets: the server and agents as processes on this machine.
    root.command("quickstart")(quickstart)
    root.command("simulate")(simulate)
