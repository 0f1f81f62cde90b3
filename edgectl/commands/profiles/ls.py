import typer

from edgectl.app import Application
from edgectl.options import Output, ProfilesDir
from edgectl.views.profiles import profiles_table


def ls(ctx: typer.Context, profiles_dir: ProfilesDir = None, output: Output = None) -> None:
    """List the device profiles: the built-in ones and your own.

    Each profile names a compile target, the precision it gets by default, and the memory and
    latency budget a compiled model is checked against.

    Example

        edgectl profiles ls
        edgectl profiles ls --profiles-dir ./profiles -o json
    """
    app = Application.from_context(ctx, output)
    from device_profiles import ProfileError, builtin_dir, load_profiles
    from device_profiles.loader import profile_to_dict

    try:
        profiles = load_profiles(profiles_dir)
    except ProfileError as exc:
        app.abort(str(exc))
    data = [profile_to_dict(p) for _, p in sorted(profiles.items())]
    app.display(data, lambda rows: profiles_table(rows, str(builtin_dir())))
