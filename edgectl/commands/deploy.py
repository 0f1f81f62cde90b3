import time
from typing import Annotated, Any

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import counts_text, deployment_detail
from edgectl.watch import failure_summary, failures, watch

EXIT_FAILED = 1
EXIT_USAGE = 2
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
    waves: Annotated[
        str | None,
        typer.Option(
            help="Cumulative wave sizes, shares or counts: 1%,10%,50%,100% or 5,20,100%. "
            "Devices are taken in a stable order (a hash of their ids). Default: all at once.",
            rich_help_panel="Rollout",
        ),
    ] = None,
    ramp: Annotated[
        str | None,
        typer.Option(
            help="An exponential ramp instead of --waves: BASE,FACTOR (1,2 = 1, 2, 4, 8... devices).",
            rich_help_panel="Rollout",
        ),
    ] = None,
    bake_time: Annotated[
        float | None,
        typer.Option(
            help="Seconds a finished wave bakes before the next opens.", min=0, rich_help_panel="Rollout"
        ),
    ] = None,
    max_failure_rate: Annotated[
        float | None,
        typer.Option(
            help="Largest share of failed or timed-out devices the waves may have (default 0).",
            min=0,
            max=1,
            rich_help_panel="Gates",
        ),
    ] = None,
    min_executed: Annotated[
        int | None,
        typer.Option(
            help="Devices that must have finished before the failure gate judges.",
            min=1,
            rich_help_panel="Gates",
        ),
    ] = None,
    max_per_minute: Annotated[
        int | None,
        typer.Option(
            help="Devices told the new model per minute, at most.", min=1, rich_help_panel="Rollout"
        ),
    ] = None,
    device_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a device may take to finish before it is TIMED_OUT (default 600).",
            min=1,
            rich_help_panel="Rollout",
        ),
    ] = None,
    health_window: Annotated[
        float | None,
        typer.Option(
            help="Seconds a device must run the new version after switching before it is HEALTHY "
            "(default 5).",
            min=0,
            rich_help_panel="Rollout",
        ),
    ] = None,
    auto_rollback: Annotated[
        bool,
        typer.Option(
            "--auto-rollback/--no-auto-rollback",
            help="Roll touched devices back when a gate fails.",
            rich_help_panel="Gates",
        ),
    ] = True,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            help="Quality gate: largest share of failed inference requests on the new version.",
            min=0,
            max=1,
            rich_help_panel="Gates",
        ),
    ] = None,
    max_p95_regression: Annotated[
        float | None,
        typer.Option(
            help="Quality gate: new p95 latency over the previous version's on the same devices "
            "(1.5 = 50%% slower).",
            min=1,
            rich_help_panel="Gates",
        ),
    ] = None,
    max_offload_ratio: Annotated[
        float | None,
        typer.Option(
            help="Quality gate: largest share of requests sent to the cloud.",
            min=0,
            max=1,
            rich_help_panel="Gates",
        ),
    ] = None,
    max_prediction_psi: Annotated[
        float | None,
        typer.Option(
            help="Quality gate: largest drift of the predicted classes against the previous version "
            "(population stability index; 0.25 is a usual mark).",
            min=0,
            rich_help_panel="Gates",
        ),
    ] = None,
    output: Output = None,
) -> None:
    """Deploy a model version to a device group: the server compiles it per target, then rolls it out.

    The rollout goes wave by wave (--waves or --ramp); each wave's gates (failures, and the
    quality gates from telemetry) must pass before the next wave opens, and a failed gate halts
    the rollout and rolls every device it touched back to its previous version (unless
    --no-auto-rollback). Devices outside the opened waves never receive the model.

    Without --wait this returns once the server accepted the deployment. With --wait it shows the
    waves, each target's compile and each device's state until the server decides (SUCCEEDED,
    ROLLED_BACK, HALTED, FAILED) or the timeout passed. Exit status: 0 when the deployment
    SUCCEEDED, 1 when it did not (a summary of the failures is printed), 3 on timeout, 130 on
    Ctrl-C (the rollout goes on). With -o json the final deployment is printed as JSON.

    Example

        edgectl deploy digits:1 --group lab
        edgectl deploy digits:1 --group lab --waves 1%,10%,50%,100% --bake-time 300 --wait
        edgectl deploy digits:2 --group cams --ramp 1,2 --max-failure-rate 0.05 --max-p95-regression 1.3
    """
    app = Application.from_context(ctx, output)
    name, sep, version = model.partition(":")
    if not (name and sep and version):
        raise typer.BadParameter(f"{model!r} is not NAME:VERSION", param_hint="NAME:VERSION")
    rollout = rollout_spec(
        waves=waves,
        ramp=ramp,
        bake_time_s=bake_time,
        max_failure_rate=max_failure_rate,
        min_executed=min_executed,
        max_per_minute=max_per_minute,
        device_timeout_s=device_timeout,
        health_window_s=health_window,
        auto_rollback=auto_rollback,
        gates={
            "max_error_rate": max_error_rate,
            "max_p95_regression": max_p95_regression,
            "max_offload_ratio": max_offload_ratio,
            "max_prediction_psi": max_prediction_psi,
        },
    )
    created = app.api.create_deployment(model, group, rollout)
    dep_id = str(created.get("id"))
    if not wait:
        if app.json_output:
            app.terminal.json(created)
        else:
            app.terminal.success(f"deployment {dep_id}: {model} → group {group} ({created.get('state')})")
            app.terminal.info(f"follow it with: edgectl rollouts status {dep_id} --watch")
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
            f"stopped watching; deployment {dep_id} goes on (edgectl rollouts status {dep_id} --watch)",
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


def rollout_spec(
    *, waves: str | None, ramp: str | None, gates: dict[str, float | None], **fields: Any
) -> dict[str, Any]:
    """The rollout spec the flags ask for, in the API's terms (only what was given). Raises
    ``typer.BadParameter`` for a wave list or ramp that does not parse."""
    # The parsers are the server's own (pure, light), imported here so --help stays quick.
    from agent.contracts import ContractError
    from fleet_server.rollout.spec import parse_ramp, parse_waves

    if waves and ramp:
        raise typer.BadParameter("give --waves or --ramp, not both", param_hint="--ramp")
    spec: dict[str, Any] = {k: v for k, v in fields.items() if v is not None and k != "auto_rollback"}
    if fields.get("auto_rollback") is False:
        spec["auto_rollback"] = False
    try:
        if waves:
            spec["waves"] = [w.to_dict() for w in parse_waves(waves)]
        if ramp:
            spec["ramp_base"], spec["ramp_factor"] = parse_ramp(ramp)
    except ContractError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ramp" if ramp else "--waves") from None
    chosen = {k: v for k, v in gates.items() if v is not None}
    if chosen:
        spec["gates"] = chosen
    return spec
