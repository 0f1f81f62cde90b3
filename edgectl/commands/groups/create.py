from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.commands.groups._policy import (
    LatencyBudget,
    MaxBatch,
    OffloadCloud,
    OffloadShare,
    OffloadUrl,
    offload_body,
    serving_body,
)
from edgectl.options import Output
from edgectl.views.groups import group_detail


def _selector(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not LABEL=VALUE", param_hint="--selector")
        out[key] = value
    return out


def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The group's name.")],
    device: Annotated[
        list[str] | None,
        typer.Option("--device", "-d", metavar="ID", help="A device to include (repeatable)."),
    ] = None,
    selector: Annotated[
        list[str] | None,
        typer.Option(
            "--selector",
            "-l",
            metavar="LABEL=VALUE",
            help="Include every device with this label (repeatable; all must match).",
        ),
    ] = None,
    latency_budget_ms: LatencyBudget = None,
    max_batch: MaxBatch = None,
    offload_url: OffloadUrl = None,
    offload_cloud: OffloadCloud = False,
    offload_share: OffloadShare = None,
    output: Output = None,
) -> None:
    """Create a device group from device ids and/or label selectors, with its serving and
    offload policy.

    Members are resolved by the server, now and as devices come and go. Every deployment to the
    group gives its devices the group's policy (change it with `edgectl groups set`).

    Example

        edgectl groups create lab --device pi5-kitchen --device nuc-1
        edgectl groups create pis --selector board=pi5 --selector site=lab
        edgectl groups create cams -l kind=cam --latency-budget-ms 50 --offload-cloud --offload-share 0.3
    """
    app = Application.from_context(ctx, output)
    group = app.api.create_group(
        name,
        device or [],
        _selector(selector or []),
        serving_body(latency_budget_ms, max_batch),
        offload_body(offload_url, offload_cloud, offload_share),
    )
    if not app.json_output:
        app.terminal.success(f"created group {group.get('name', name)}")
    app.display(group, group_detail)
