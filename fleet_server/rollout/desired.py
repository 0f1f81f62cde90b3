"""The desired state a deployment writes for a device, and when it writes a new one (pure).

Generations only grow, by one per change: writing the same model under the same deployment again
would only bump the generation and make the device re-check what it already runs.
"""

from __future__ import annotations

from agent.contracts import DesiredModel, DesiredState


def needs_write(current: DesiredState | None, deployment_id: str, model: DesiredModel) -> bool:
    """True when a device's stored desired state does not already ask for ``model`` (and only
    it) under ``deployment_id`` (so writing it again would only bump the generation)."""
    if current is None:
        return True
    return current.deployment_id != deployment_id or current.models != (model,)


def next_desired(
    device_id: str, generation: int, deployment_id: str, model: DesiredModel, issued_at: float
) -> DesiredState:
    """The desired state that follows one at ``generation``: the generation grows by one."""
    return DesiredState(
        device_id=device_id,
        generation=generation + 1,
        models=(model,),
        deployment_id=deployment_id,
        issued_at=issued_at,
    )
