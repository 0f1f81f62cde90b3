"""What state a deployment is in, and the error it shows (pure).

A deployment is FAILED when a compile it needs failed, COMPILING while one is pending, PENDING
with no member device, SUCCEEDED when every device is HEALTHY, FAILED when every device has ended
and one FAILED, else RUNNING.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from fleet_server.states import ENDED, BundleStatus, DeploymentState, DeviceRolloutState


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


def deployment_error(
    failed_compiles: Sequence[str], state: DeploymentState, device_states: Sequence[DeviceRolloutState]
) -> str | None:
    """The error a deployment in ``state`` shows: the failed compiles' errors, else how many
    devices failed when it FAILED on its devices, else none."""
    if failed_compiles:
        return compile_failure_message(failed_compiles)
    if state == DeploymentState.FAILED:
        n = sum(s == DeviceRolloutState.FAILED for s in device_states)
        return f"{n} of {len(device_states)} devices failed"
    return None


def counts(states: Iterable[DeviceRolloutState]) -> dict[str, int]:
    """Devices per rollout state, every state present (zeros included), in state order."""
    c = Counter(states)
    return {s.value: c.get(s, 0) for s in DeviceRolloutState}


def compile_failure_message(failed: Iterable[str]) -> str:
    """One message out of the failed compiles' errors (each already names its target)."""
    return "; ".join(sorted(set(failed)))
