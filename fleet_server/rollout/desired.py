"""The desired state a deployment writes for a device, and when it writes a new one (pure).

Generations only grow, by one per change: writing the same model under the same deployment and
the same serving and offload policies again would only bump the generation and make the device
re-check what it already runs. A policy change alone is a change (it must reach devices without a
new deployment).
"""

from __future__ import annotations

from agent.contracts import DesiredModel, DesiredState
from agent.contracts.policy import OffloadPolicy, ServingPolicy


def needs_write(
    current: DesiredState | None,
    deployment_id: str,
    model: DesiredModel,
    serving: ServingPolicy | None = None,
    offload: OffloadPolicy | None = None,
) -> bool:
    """True when a device's stored desired state does not already ask for ``model`` (and only
    it) under ``deployment_id`` with these policies (``None``: the defaults), so writing it again
    would only bump the generation."""
    if current is None:
        return True
    return (
        current.deployment_id != deployment_id
        or current.models != (model,)
        or current.serving != (serving or ServingPolicy())
        or current.offload != (offload or OffloadPolicy())
    )


def next_desired(
    device_id: str,
    generation: int,
    deployment_id: str,
    model: DesiredModel,
    issued_at: float,
    serving: ServingPolicy | None = None,
    offload: OffloadPolicy | None = None,
) -> DesiredState:
    """The desired state that follows one at ``generation``: the generation grows by one, and it
    carries ``serving`` and ``offload`` (``None``: the defaults)."""
    return DesiredState(
        device_id=device_id,
        generation=generation + 1,
        models=(model,),
        deployment_id=deployment_id,
        serving=serving or ServingPolicy(),
        offload=offload or OffloadPolicy(),
        issued_at=issued_at,
    )
