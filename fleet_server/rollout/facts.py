"""What the rollout core decides over: plain, frozen snapshots the controller reads from the
database (no rows, sessions or clocks in here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.contracts import DesiredModel, DesiredState, ReportedError, ReportedState
from fleet_server.build_settings import BuildKey
from fleet_server.rollout.policy import GroupPolicy
from fleet_server.rollout.spec import RolloutSpec
from fleet_server.states import BundleStatus, DeploymentState, DeviceRolloutState


@dataclass(frozen=True)
class DeviceFacts:
    """A device as a deployment sees it: the build its profile needs (``None``: unknown profile,
    it gets no bundle), what it was last told and what it last said."""

    device_id: str
    build: BuildKey | None
    desired: DesiredState | None = None
    desired_generation: int = 0
    reported: ReportedState | None = None
    active: str | None = None


@dataclass(frozen=True)
class DeviceRow:
    """A deployment's record of one of its devices: the generation its desired state went out as
    (``None``: not written yet), its rollout state, active model and error; its wave (``None``:
    the rollout has not started), when it was told (``notified_at``) and when it committed the
    new version (the health window's start); the models it was told before this deployment
    (``previous``, what a roll-back returns it to) and whether a roll-back went out to it."""

    generation: int | None = None
    state: DeviceRolloutState = DeviceRolloutState.PENDING
    active: str | None = None
    error: ReportedError | None = None
    wave: int | None = None
    notified_at: float | None = None
    committed_at: float | None = None
    previous: tuple[DesiredModel, ...] | None = None
    rolled_back: bool = False


@dataclass(frozen=True)
class Build:
    """A compile a deployment needs: its target, status, error once failed, and, once ready, the
    model entry a device of this build is told to run."""

    target: str
    status: BundleStatus
    error: str | None = None
    model: DesiredModel | None = None


@dataclass(frozen=True)
class DeploymentFacts:
    """A live deployment: its id, model (``name:version``), state and error as stored, its
    device rows by device id, the policy of the group it targets, and the server's public URL
    (``cloud_url``: where a group's "this server's cloud endpoint" points; ``None``: not set);
    its rollout spec, the highest wave opened (-1: none), when the opened waves all ended (the
    bake's start) and whether it is rolling back."""

    id: int
    model_ref: str
    state: DeploymentState = DeploymentState.PENDING
    error: str | None = None
    rows: Mapping[str, DeviceRow] = field(default_factory=dict)
    policy: GroupPolicy = field(default_factory=GroupPolicy)
    cloud_url: str | None = None
    spec: RolloutSpec = field(default_factory=RolloutSpec)
    wave: int = -1
    wave_ended_at: float | None = None
    rollback: bool = False
