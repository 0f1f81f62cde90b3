import typer

from edgectl.app import Application
from edgectl.commands.keys._common import KeysDir, PassphraseFile
from edgectl.options import Output


def init(
    ctx: typer.Context,
    dir: KeysDir,
    root_keys: int = typer.Option(3, help="how many root keys"),
    root_threshold: int = typer.Option(2, help="how many root keys must sign a new root"),
    passphrase_file: PassphraseFile = None,
    output: Output = None,
) -> None:
    """Make the fleet's TUF keys and root metadata version 1 in DIR.

    DIR/offline holds the root keys (encrypted with the passphrase when given): keep them off
    the server. DIR/server holds the online targets, snapshot and timestamp keys and the root
    metadata: start the server with `fleet-server serve --keys-dir DIR/server`. Devices trust
    DIR/server/root.json (enrolment hands it out; `edge-agent --tuf-root FILE` takes it too).

    Example

        edgectl keys init --dir ~/fleet-keys --root-keys 3 --root-threshold 2 --passphrase-file pw.txt
    """
    app = Application.from_context(ctx, output)
    from fleet_server.errors import FleetError
    from fleet_server.trust.keys import init_keys, read_passphrase

    try:
        root = init_keys(
            dir,
            root_keys=root_keys,
            root_threshold=root_threshold,
            passphrase=read_passphrase(passphrase_file),
        )
    except FleetError as exc:
        app.abort(exc.message)
    data = {
        "dir": str(dir),
        "root_version": root.signed.version,
        "root_threshold": root_threshold,
        "root_keys": root_keys,
        "server_keys_dir": str(dir / "server"),
        "trust_root": str(dir / "server" / "root.json"),
        "next": f"fleet-server serve --keys-dir {dir / 'server'}",
    }
    app.display(
        data,
        lambda d: (
            f"TUF keys made in {d['dir']} (root v1, {root_threshold} of {root_keys}).\n"
            f"Start the server with: {d['next']}\nDevices trust: {d['trust_root']}"
        ),
    )
