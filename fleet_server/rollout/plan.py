"""The per-device and per-deployment rollout decisions (pure): plain facts and a clock value in,
the effects to apply out. The controller stores what a plan says and publishes its desired states;
nothing here reads or writes.

Rules:

- Desired states are written only once every compile the deployment needs is ready, so all its
  devices move to the same model; a device with an unknown profile keeps a PENDING row.
- A device gets a new desired state (one generation more) when its stored one does not ask for
  this deployment's model under this deployment with the serving and offload policies of the
  deployment's group (:mod:`fleet_server.rollout.policy`): a policy change alone reaches the
  devices without a new deployment; otherwise its row keeps (or, first time, takes)
  the generation it already has.
- A device's rollout state comes from its reported state against that generation
  (:func:`~fleet_server.rollout.device_state.device_state`); the deployment's from its compiles
  and its devices (:mod:`fleet_server.rollout.deployment_state`).
- Devices that left the deployment (left the group, or follow a newer deployment) lose their row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.contracts import DesiredModel, DesiredState
from agent.contracts.policy import OffloadPolicy, ServingPolicy
from fleet_server.build_settings import BuildKey
from fleet_server.rollout.deployment_state import deployment_error, deployment_state
from fleet_server.rollout.desired import needs_write, next_desired
from fleet_server.rollout.device_state import device_state
from fleet_server.rollout.facts import Build, DeploymentFacts, DeviceFacts, DeviceRow
from fleet_server.rollout.policy import device_offload
from fleet_server.states import BundleStatus, DeploymentState


@dataclass(frozen=True)
class DeviceDecision:
    """What becomes of one device of a deployment: its row afterwards, a new desired state to store
    on the device and publish (``None``: it keeps the one it has), and whether the row's state,
    active model or error moved (so its ``updated_at`` is stamped; a new row always counts)."""

    device_id: str
    row: DeviceRow
    desired: DesiredState | None = None
    moved: bool = False


@dataclass(frozen=True)
class DeploymentPlan:
    """The effects of one decision over a deployment: the member devices' decisions (in the
    members' order), the device rows to drop, and the deployment's state and error afterwards
    (``changed``: they differ from the stored ones)."""

    devices: tuple[DeviceDecision, ...]
    removed: tuple[str, ...]
    state: DeploymentState
    error: str | None
    changed: bool

    @property
    def desired(self) -> tuple[DesiredState, ...]:
        """The desired states to store and then publish, in order."""
        return tuple(d.desired for d in self.devices if d.desired is not None)


def plan_device(
    deployment_id: int,
    model_ref: str,
    device: DeviceFacts,
    row: DeviceRow | None,
    model: DesiredModel | None,
    now: float,
    serving: ServingPolicy | None = None,
    offload: OffloadPolicy | None = None,
) -> DeviceDecision:
    """Decide one device of deployment ``deployment_id`` (model ``model_ref``) whose row is ``row``
    (``None``: new to the deployment). ``model`` is what the device should run, ``None`` while it
    can't be told yet (compiles not all ready, unknown profile); ``serving`` and ``offload`` are
    the policies it is told with it (``None``: the defaults). ``now`` stamps a new desired
    state."""
    generation = None if row is None else row.generation
    desired = None
    if model is not None:
        if needs_write(device.desired, str(deployment_id), model, serving, offload):
            desired = next_desired(
                device.device_id,
                device.desired_generation,
                str(deployment_id),
                model,
                now,
                serving,
                offload,
            )
            generation = desired.generation
        elif generation is None:
            generation = device.desired_generation
    state, error = device_state(device.reported, generation, model_ref)
    new = DeviceRow(generation, state, device.active, error)
    moved = row is None or (row.state, row.active, row.error) != (new.state, new.active, new.error)
    return DeviceDecision(device.device_id, new, desired, moved)


def plan_deployment(
    deployment: DeploymentFacts,
    members: Sequence[DeviceFacts],
    builds: Mapping[BuildKey, Build],
    now: float,
) -> DeploymentPlan:
    """Decide a live deployment over its member devices (those it claims, in the order their
    desired states should go out) and the builds they need (every member's ``build`` is a key of
    ``builds``). ``now`` stamps new desired states."""
    member_ids = {m.device_id for m in members}
    removed = tuple(d for d in deployment.rows if d not in member_ids)
    all_ready = all(b.status == BundleStatus.READY for b in builds.values())
    serving = deployment.policy.serving
    offload = device_offload(deployment.policy.offload, deployment.cloud_url)
    decisions = []
    for dev in members:
        model = builds[dev.build].model if all_ready and dev.build is not None else None
        row = deployment.rows.get(dev.device_id)
        decisions.append(
            plan_device(deployment.id, deployment.model_ref, dev, row, model, now, serving, offload)
        )
    device_states = [d.row.state for d in decisions]
    statuses = [b.status for b in builds.values()]
    state = deployment_state(statuses, device_states)
    failed = [b.error or f"{b.target}: failed" for b in builds.values() if b.status == BundleStatus.FAILED]
    error = deployment_error(failed, state, device_states)
    changed = (deployment.state, deployment.error) != (state, error)
    return DeploymentPlan(tuple(decisions), removed, state, error, changed)
