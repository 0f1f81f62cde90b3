"""What a device's reported state means for the deployment it follows (pure).

Reported DOWNLOADING/VERIFYING → DOWNLOADING; INSTALLING/LOADING/SELF_TEST → INSTALLING;
COMMITTED at the deployment's generation with its model active → HEALTHY; an error (or a
rollback) for that generation → FAILED, except ``DOWNLOAD_FAILED``: the agent retries that
generation, so the device is still DOWNLOADING (the error is shown with it). A report about an
older generation means the device has not picked the deployment up yet: NOTIFIED. No desired
state written for the deployment yet: PENDING.
"""

from __future__ import annotations

from agent.contracts import ErrorCode, ReportedError, ReportedState, UpdateState
from fleet_server.states import DeviceRolloutState

_DOWNLOADING = {UpdateState.DOWNLOADING, UpdateState.VERIFYING}
_INSTALLING = {UpdateState.INSTALLING, UpdateState.LOADING, UpdateState.SELF_TEST}
# The agent retries a generation whose download failed (network, server) without marking it
# failed, so the device is still on its way.
_RETRIED = ErrorCode.DOWNLOAD_FAILED.value


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
