import json

import typer

from edgectl.app import Application
from edgectl.commands.keys._common import KeysDir
from edgectl.options import Output


def export(
    ctx: typer.Context,
    dir: KeysDir,
    root: bool = typer.Option(False, "--root", help="print the current root metadata itself"),
    output: Output = None,
) -> None:
    """Show the public keys of every role (or, with --root, the root metadata devices trust).

    Example

        edgectl keys export --dir ~/fleet-keys -o json
        edgectl keys export --dir ~/fleet-keys --root > root.json
    """
    app = Application.from_context(ctx, output)
    from fleet_server.errors import FleetError
    from fleet_server.trust.keys import KeyDir, root_bytes

    try:
        md = KeyDir(dir).root()
    except FleetError as exc:
        app.abort(exc.message)
    if root:
        typer.echo(root_bytes(md).decode())
        return
    r = md.signed
    data = {
        "root_version": r.version,
        "expires": r.expires.isoformat(),
        "roles": {
            name: {
                "threshold": role.threshold,
                "keys": [{"keyid": k, **r.keys[k].to_dict()} for k in role.keyids],
            }
            for name, role in r.roles.items()
        },
    }
    app.display(data, lambda d: json.dumps(d, indent=2))
