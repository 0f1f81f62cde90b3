"""Rollout logic (pure): which deployment a device follows, what its reported state means for the
deployment, and what state the deployment is in. No database, broker or clock here; the
controller (:mod:`fleet_server.controller`) does the I/O around these functions.

Rules (docs/api.md):

- A device follows the newest live deployment among the groups it belongs to, so a device in two
  groups never flips between two models.
- Reported DOWNLOADING/VERIFYING → DOWNLOADING; INSTALLING/LOADING/SELF_TEST → INSTALLING;
  COMMITTED at the deployment's generation with its model active → HEALTHY; an error (or a
  rollback) for that generation → FAILED, except ``DOWNLOAD_FAILED``: the agent retries that
  generation, so the device is still DOWNLOADING (the error is shown with it). A report about an
  older generation means the device has not picked the deployment up yet: NOTIFIED.
- A deployment is FAILED when a compile it needs failed, COMPILING while one is pending, PENDING
  with no member device, SUCCEEDED when every device is HEALTHY, FAILED when every device has
  ended and one FAILED, else RUNNING.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.contracts import (
    DesiredModel,
    DesiredState,
    ErrorCode,
    ReportedError,
    ReportedState,
    UpdateState,
)
from fleet_server.membership import GroupSpec, is_member
from fleet_server.states import ENDED, BundleStatus, DeploymentState, DeviceRolloutState

_DOWNLOADING = {UpdateState.DOWNLOADING, UpdateState.VERIFYING}
_INSTALLING = {UpdateState.INSTALLING, UpdateState.LOADING, UpdateState.SELF_TEST}
# The agent retries a generation whose download failed (network, server) without marking it
# failed, so the device is still on its way.
_RETRIED = ErrorCode.DOWNLOAD_FAILED.value


@dataclass(frozen=True)
class LiveDeployment:
    """A deployment that still claims devices (not superseded), by id and group."""

    id: int
    group: str


def claims(
    devices: Mapping[str, Mapping[str, str]],
    groups: Mapping[str, GroupSpec],
    deployments: Iterable[LiveDeployment],
) -> dict[str, int]:
    """Map each device id (``devices``: id → labels) to the newest live deployment of a group it
    belongs to. Devices in no deployed group are left out."""
    newest_per_group: dict[str, int] = {}
    for dep in deployments:
        if dep.id > newest_per_group.get(dep.group, -1):
            newest_per_group[dep.group] = dep.id
    out: dict[str, int] = {}
    for device_id, labels in devices.items():
        for group_name, dep_id in newest_per_group.items():
            group = groups.get(group_name)
            if group is not None and is_member(group, device_id, labels) and dep_id > out.get(device_id, -1):
                out[device_id] = dep_id
    return out


def device_state(
    reported: ReportedState | None, generation: int | None, model_ref: str
) -> tuple[DeviceRolloutState, ReportedError | None]:
    """The rollout state of one device for a deployment whose desired state went out as
    ``generation`` (``None``: not written yet) with model ``model_ref`` (``name:version``), and the
    error to show with it. HEALTHY needs COMMITTED with ``model_ref`` active: an agent reports
    COMMITTED for every generation it applied, an already-active model included; IDLE with the
    model active means the generation was not applied (yet)."""
    if generation is None:
        return DeviceRolloutState.PENDING, None
    if reported is None or reported.generation < generation:
        return DeviceRolloutState.NOTIFIED, None
    if reported.error is not None:
        if reported.error.code == _RETRIED:
            return DeviceRolloutState.DOWNLOADING, reported.error
        return DeviceRolloutState.FAILED, reported.error
    state = reported.state
    if state == UpdateState.ROLLING_BACK:
        return DeviceRolloutState.FAILED, ReportedError("INTERNAL", "the device is rolling back the update")
    if state in _DOWNLOADING:
        return DeviceRolloutState.DOWNLOADING, None
    if state in _INSTALLING:
        return DeviceRolloutState.INSTALLING, None
    if state == UpdateState.COMMITTED:
        if reported.active == model_ref:
            return DeviceRolloutState.HEALTHY, None
        return DeviceRolloutState.FAILED, ReportedError(
            "INTERNAL", f"the device committed {reported.active}, not {model_ref}"
        )
    return DeviceRolloutState.NOTIFIED, None


def deployment_state(
    compile_statuses: Sequence[BundleStatus], device_states: Sequence[DeviceRolloutState]
) -> DeploymentState:
    """The state of a live deployment from the statuses of the compiles it needs and the rollout
    states of its devices."""
    if BundleStatus.FAILED in compile_statuses:
        return DeploymentState.FAILED
    if any(s != BundleStatus.READY for s in compile_statuses):
        return DeploymentState.COMPILING
    if not device_states:
        return DeploymentState.PENDING
    if all(s == DeviceRolloutState.HEALTHY for s in device_states):
        return DeploymentState.SUCCEEDED
    if all(s in ENDED for s in device_states):
        return DeploymentState.FAILED
    return DeploymentState.RUNNING


def counts(states: Iterable[DeviceRolloutState]) -> dict[str, int]:
    """Devices per rollout state, every state present (zeros included), in state order."""
    c = Counter(states)
    return {s.value: c.get(s, 0) for s in DeviceRolloutState}


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


def compile_failure_message(failed: Iterable[str]) -> str:
    """One message out of the failed compiles' errors (each already names its target)."""
    return "; ".join(sorted(set(failed)))
