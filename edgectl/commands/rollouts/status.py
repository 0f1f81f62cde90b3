import math
import time
from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import deployment_detail
from edgectl.watch import watch as watch_deployment

EXIT_INTERRUPTED = 130


def status(
    ctx: typer.Context,
    deployment_id: Annotated[
        str, typer.Argument(metavar="ID", help="The rollout id (see `edgectl rollouts ls`).")
    ],
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Redraw live until the server has decided the rollout.")
    ] = False,
    interval: Annotated[float, typer.Option(help="With --watch: seconds between polls.", min=0.1)] = 1.0,
    output: Output = None,
) -> None:
    """Show one rollout: its waves and gates, each target's compile and each device's state.

    With --watch the view is redrawn in place until the rollout SUCCEEDED, ROLLED_BACK, HALTED
    or FAILED (Ctrl-C stops watching; the rollout goes on). With -o json the (final) rollout is
    printed as JSON.

    Example

        edgectl rollouts status 7
        edgectl rollouts status 7 --watch
        edgectl rollouts status 7 -o json
    """
    app = Application.from_context(ctx, output)
    dep = app.api.get_deployment(deployment_id)
    if not watch:
        app.display(dep, deployment_detail)
        return
    start = time.monotonic()
    try:
        with app.terminal.live(deployment_detail(dep, 0.0), transient=app.json_output) as redraw:
            dep = watch_deployment(
                lambda: app.api.get_deployment(deployment_id),
                timeout=math.inf,  # until the server decides
                interval=interval,
                clock=time.monotonic,
                sleep=time.sleep,
                on_update=lambda d: redraw(deployment_detail(d, time.monotonic() - start)),
            ).deployment
    except KeyboardInterrupt:
        app.abort(f"stopped watching; rollout {deployment_id} goes on", EXIT_INTERRUPTED)
    if app.json_output:
        app.terminal.json(dep)
    else:
        app.terminal.show(deployment_detail(dep, time.monotonic() - start))
