"""The state names the server keeps and shows: bundles, deployments, devices in a deployment, and
the moves between them, one declarative table each (as the agent's update machine has).

Deployment (a rollout)::

    PENDING → COMPILING → RUNNING(wave k) ⇄ PAUSED → SUCCEEDED
                              └────────────→ HALTED → ROLLED_BACK
    a failed compile: FAILED; a newer deployment to the group: SUPERSEDED

Device of a deployment::

    PENDING → NOTIFIED → DOWNLOADING → INSTALLING → HEALTHY | FAILED | TIMED_OUT
    (after a halt) any touched device → ROLLED_BACK, once it runs the previous version again

A device is INSTALLING until it has committed the new version *and* passed the post-switch health
window; only then HEALTHY.
"""

from __future__ import annotations

from enum import StrEnum


class BundleStatus(StrEnum):
    """A compile of one model version for one (target, precision, settings key)."""

    PENDING = "pending"
    COMPILING = "compiling"
    READY = "ready"
    FAILED = "failed"


class DeploymentState(StrEnum):
    PENDING = "PENDING"  # created; no member device yet, or not looked at yet
    COMPILING = "COMPILING"  # waiting for the bundles its devices need
    RUNNING = "RUNNING"  # waves opening, devices updating
    PAUSED = "PAUSED"  # an operator paused it: no new wave opens, devices in flight go on
    SUCCEEDED = "SUCCEEDED"  # every wave opened, every device HEALTHY (or failures within the gate)
    HALTED = "HALTED"  # a gate failed or an operator aborted; rolling back unless told not to
    ROLLED_BACK = "ROLLED_BACK"  # every touched device runs the previous version again
    FAILED = "FAILED"  # a compile it needs failed
    SUPERSEDED = "SUPERSEDED"  # a newer deployment to the same group took over


class DeviceRolloutState(StrEnum):
    PENDING = "PENDING"  # its wave has not opened (or its compile is not ready)
    NOTIFIED = "NOTIFIED"  # its desired state went out
    DOWNLOADING = "DOWNLOADING"
    INSTALLING = "INSTALLING"  # installing, self-testing, or in the post-switch health window
    HEALTHY = "HEALTHY"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"  # no final report within the device timeout
    ROLLED_BACK = "ROLLED_BACK"


D = DeploymentState
S = DeviceRolloutState

# Every move a deployment may make. SUPERSEDED can follow any state that is not final.
DEPLOYMENT_MOVES: dict[DeploymentState, frozenset[DeploymentState]] = {
    # One decision may go straight to its end: a group already running the model, a first failure.
    D.PENDING: frozenset({D.COMPILING, D.RUNNING, D.SUCCEEDED, D.FAILED, D.HALTED, D.PAUSED}),
    D.COMPILING: frozenset({D.PENDING, D.RUNNING, D.SUCCEEDED, D.FAILED, D.HALTED, D.PAUSED}),
    D.RUNNING: frozenset({D.PAUSED, D.SUCCEEDED, D.HALTED, D.COMPILING, D.FAILED}),
    D.PAUSED: frozenset({D.RUNNING, D.HALTED, D.PENDING, D.COMPILING}),
    D.SUCCEEDED: frozenset({D.HALTED, D.RUNNING}),  # an operator roll-back; a new member joining
    D.HALTED: frozenset({D.ROLLED_BACK}),
    D.ROLLED_BACK: frozenset(),
    # A failed compile retried (edgectl models compile): the rollout goes on from the start.
    D.FAILED: frozenset({D.COMPILING, D.PENDING, D.RUNNING, D.SUCCEEDED, D.HALTED}),
    D.SUPERSEDED: frozenset(),
}
FINAL_DEPLOYMENT = frozenset({D.ROLLED_BACK, D.SUPERSEDED})
# States in which a deployment still drives its devices towards its model.
ADVANCING = frozenset({D.PENDING, D.COMPILING, D.RUNNING, D.PAUSED, D.SUCCEEDED})
# States the operator and `edgectl deploy --wait` treat as the end of the story.
SETTLED = frozenset({D.SUCCEEDED, D.HALTED, D.ROLLED_BACK, D.FAILED, D.SUPERSEDED})

# Every move a device of a deployment may make (staying put is always allowed).
DEVICE_MOVES: dict[DeviceRolloutState, frozenset[DeviceRolloutState]] = {
    S.PENDING: frozenset({S.NOTIFIED, S.DOWNLOADING, S.INSTALLING, S.HEALTHY, S.FAILED, S.TIMED_OUT}),
    S.NOTIFIED: frozenset({S.DOWNLOADING, S.INSTALLING, S.HEALTHY, S.FAILED, S.TIMED_OUT, S.ROLLED_BACK}),
    S.DOWNLOADING: frozenset({S.NOTIFIED, S.INSTALLING, S.HEALTHY, S.FAILED, S.TIMED_OUT, S.ROLLED_BACK}),
    S.INSTALLING: frozenset({S.NOTIFIED, S.DOWNLOADING, S.HEALTHY, S.FAILED, S.TIMED_OUT, S.ROLLED_BACK}),
    S.HEALTHY: frozenset({S.NOTIFIED, S.DOWNLOADING, S.INSTALLING, S.FAILED, S.ROLLED_BACK}),
    S.FAILED: frozenset({S.NOTIFIED, S.DOWNLOADING, S.INSTALLING, S.HEALTHY, S.ROLLED_BACK}),
    S.TIMED_OUT: frozenset({S.NOTIFIED, S.DOWNLOADING, S.INSTALLING, S.HEALTHY, S.FAILED, S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset(),
}

# A device of a deployment whose story has ended for the install gate.
ENDED = frozenset({S.HEALTHY, S.FAILED, S.TIMED_OUT, S.ROLLED_BACK})
# Where a device may stay once a roll-back has been asked of it.
ROLLBACK_ENDED = frozenset({S.FAILED, S.TIMED_OUT, S.ROLLED_BACK})
IN_FLIGHT = frozenset({S.NOTIFIED, S.DOWNLOADING, S.INSTALLING})


class IllegalMove(ValueError):
    """A state change the tables above do not allow: a bug in the rollout core."""


def check_deployment_move(old: DeploymentState, new: DeploymentState) -> DeploymentState:
    if old == new or (new == D.SUPERSEDED and old not in FINAL_DEPLOYMENT) or new in DEPLOYMENT_MOVES[old]:
        return new
    raise IllegalMove(f"deployment {old} → {new} is not a move the rollout makes")


def check_device_move(old: DeviceRolloutState, new: DeviceRolloutState) -> DeviceRolloutState:
    if old == new or new in DEVICE_MOVES[old]:
        return new
    raise IllegalMove(f"device {old} → {new} is not a move the rollout makes")
