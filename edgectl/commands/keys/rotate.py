import typer

from edgectl.app import Application
from edgectl.commands.keys._common import KeysDir, PassphraseFile
from edgectl.options import Output


def rotate(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="root, targets, snapshot or timestamp"),
    dir: KeysDir = ...,  # type: ignore[assignment]
    passphrase_file: PassphraseFile = None,
    output: Output = None,
) -> None:
    """Replace ROLE's keys and publish root version N+1, signed by the old root threshold and the
    new root keys, so running devices accept it without re-enrolment.

    The server (given DIR/server) takes the new keys at its next refresher pass, or at once with
    `POST /api/v1/tuf/refresh` (admin).

    Example

        edgectl keys rotate targets --dir ~/fleet-keys --passphrase-file pw.txt
    """
    app = Application.from_context(ctx, output)
    from fleet_server.errors import FleetError
    from fleet_server.trust.keys import read_passphrase
    from fleet_server.trust.keys import rotate as rotate_keys

    try:
        root = rotate_keys(dir, role, passphrase=read_passphrase(passphrase_file))
    except FleetError as exc:
        app.abort(exc.message)
    data = {"role": role, "root_version": root.signed.version}
    app.display(data, lambda d: f"{d['role']} keys rotated; root is now v{d['root_version']}")
