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


def set_policy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The group's name.")],
    latency_budget_ms: LatencyBudget = None,
    max_batch: MaxBatch = None,
    offload_url: OffloadUrl = None,
    offload_cloud: OffloadCloud = False,
    no_offload: Annotated[bool, typer.Option("--no-offload", help="Stop offloading.")] = False,
    offload_share: OffloadShare = None,
    output: Output = None,
) -> None:
    """Change a group's serving and offload policy; what is not given stays as it is.

    The group's devices get the new policy at once, without a new deployment.

    Example

        edgectl groups set lab --latency-budget-ms 50 --offload-cloud --offload-share 0.3
        edgectl groups set lab --offload-url http://triton.local:8000
        edgectl groups set lab --no-offload
    """
    app = Application.from_context(ctx, output)
    serving = serving_body(latency_budget_ms, max_batch)
    offload = offload_body(offload_url, offload_cloud, offload_share, no_offload)
    if serving is None and offload is None:
        raise typer.BadParameter("give at least one policy option (see --help)", param_hint="NAME")
    group = app.api.update_group(name, serving, offload)
    if not app.json_output:
        app.terminal.success(f"updated group {group.get('name', name)}")
    app.display(group, group_detail)
