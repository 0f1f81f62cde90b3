from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output, ProfilesDir
from edgectl.views.profiles import profile_detail


def show(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="A profile name (see `edgectl profiles ls`) or a path to a profile YAML."
        ),
    ],
    profiles_dir: ProfilesDir = None,
    output: Output = None,
) -> None:
    """Show one device profile in full.

    Example

        edgectl profiles show raspberry-pi-5
        edgectl profiles show ./profiles/my-board.yaml -o json
    """
    app = Application.from_context(ctx, output)
    from device_profiles import ProfileError, builtin_dir, load_profile
    from device_profiles.loader import profile_to_dict

    try:
        profile = load_profile(name, profiles_dir)
    except ProfileError as exc:
        app.abort(str(exc))
    app.display(profile_to_dict(profile), lambda p: profile_detail(p, str(builtin_dir())))
