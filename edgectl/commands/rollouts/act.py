"""``edgectl rollouts pause|resume|abort|rollback ID``: an operator's hand on a running rollout."""

from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.deployments import deployment_line

RolloutId = Annotated[str, typer.Argument(metavar="ID", help="The rollout id (see `edgectl rollouts ls`).")]


def _act(ctx: typer.Context, deployment_id: str, action: str, output: Output, done: str) -> None:
    app = Application.from_context(ctx, output)
    dep = app.api.act_on_deployment(deployment_id, action)
    if app.json_output:
        app.terminal.json(dep)
        return
    app.terminal.success(f"rollout {deployment_id} {done}: {deployment_line(dep)}")


def pause(ctx: typer.Context, deployment_id: RolloutId, output: Output = None) -> None:
    """Pause a rollout: no new wave opens; devices already told the new model go on.

    Example

        edgectl rollouts pause 7
    """
    _act(ctx, deployment_id, "pause", output, "paused")


def resume(ctx: typer.Context, deployment_id: RolloutId, output: Output = None) -> None:
    """Resume a paused rollout from the wave it was in.

    Example

        edgectl rollouts resume 7
    """
    _act(ctx, deployment_id, "resume", output, "resumed")


def abort(ctx: typer.Context, deployment_id: RolloutId, output: Output = None) -> None:
    """Abort a rollout where it stands (HALTED), without rolling devices back.

    Roll them back later with `edgectl rollouts rollback ID`.

    Example

        edgectl rollouts abort 7
    """
    _act(ctx, deployment_id, "abort", output, "aborted")


def rollback(ctx: typer.Context, deployment_id: RolloutId, output: Output = None) -> None:
    """Roll a rollout back: every device it told the new model is told its previous models again.

    The rollout is HALTED at once and ROLLED_BACK when every such device runs its previous
    version (follow it with `edgectl rollouts status ID --watch`).

    Example

        edgectl rollouts rollback 7
    """
    _act(ctx, deployment_id, "rollback", output, "rolling back")
