import time
from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import counts_text, deployment_detail
from edgectl.watch import failure_summary, failures, watch

EXIT_FAILED = 1
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130


def deploy(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="NAME:VERSION", help="A pushed model version, e.g. digits:1.")
    ],
    group: Annotated[str, typer.Option("--group", "-g", help="The device group to roll it out to.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the rollout live until it is decided.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds.", min=0)
    ] = 900,
    interval: Annotated[float, typer.Option(help="With --wait: seconds between polls.", min=0.05)] = 2.0,
    output: Output = None,
) -> None:
    """Deploy a model version to a device group: the server compiles it per target, then rolls it out.

    Without --wait this returns once the server accepted the deployment. With --wait it shows each
    target's compile and each device's state until every device is HEALTHY, one FAILED, or the
    timeout passed. Exit status: 0 when the deployment SUCCEEDED, 1 when it failed (a summary of
    the failures is printed), 3 on timeout, 130 on Ctrl-C (the rollout goes on). With -o json the
    final deployment is printed as JSON.

    Example

        edgectl deploy digits:1 --group lab
        edgectl deploy digits:1 --group lab --wait --timeout 600
    """
    app = Application.from_context(ctx, output)
    name, sep, version = model.partition(":")
    if not (name and sep and version):
        raise typer.BadParameter(f"{model!r} is not NAME:VERSION", param_hint="NAME:VERSION")
    created = app.api.create_deployment(model, group)
    dep_id = str(created.get("id"))
    if not wait:
        if app.json_output:
            app.terminal.json(created)
        else:
            app.terminal.success(f"deployment {dep_id}: {model} → group {group} ({created.get('state')})")
            app.terminal.info(f"follow it with: edgectl deployments status {dep_id}")
        return

    start = time.monotonic()
    try:
        with app.terminal.live(deployment_detail(created, 0.0), transient=app.json_output) as redraw:
            result = watch(
                lambda: app.api.get_deployment(dep_id),
                timeout=timeout,
                interval=interval,
                clock=time.monotonic,
                sleep=time.sleep,
                on_update=lambda dep: redraw(deployment_detail(dep, time.monotonic() - start)),
            )
    except KeyboardInterrupt:
        app.abort(
            f"stopped watching; deployment {dep_id} goes on (edgectl deployments status {dep_id})",
            EXIT_INTERRUPTED,
        )
    final = result.deployment
    if app.json_output:
        app.terminal.json(final)
    if result.succeeded:
        if not app.json_output:
            app.terminal.success(f"deployment {dep_id} SUCCEEDED: {counts_text(final.get('counts'))}")
        return
    for line in failures(final):
        app.terminal.info(f"  {line}")
    progress = counts_text(final.get("counts")) or "no device counts"
    if result.timed_out:
        app.abort(
            f"deployment {dep_id} not decided after {timeout:g}s (state {final.get('state')}: {progress})",
            EXIT_TIMED_OUT,
        )
    app.abort(f"deployment {dep_id} {final.get('state')}: {failure_summary(final)} ({progress})", EXIT_FAILED)
