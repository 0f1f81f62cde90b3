"""Creating deployments (the rollout controller does the rest) and looking them up."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from device_profiles import DeviceProfile
from fleet_server.catalog import get_model_version
from fleet_server.db import Deployment, utcnow
from fleet_server.errors import NotFoundError, UnusableError
from fleet_server.groups import get_group, group_members
from fleet_server.names import parse_model_ref
from fleet_server.queries import find_bundle, needs_of
from fleet_server.rollout import RolloutSpec, compile_failure_message
from fleet_server.states import ADVANCING, BundleStatus, DeploymentState, IllegalMove, check_deployment_move


def get_deployment(session: Session, deployment_id: str | int) -> Deployment:
    try:
        key = int(deployment_id)
    except ValueError:
        key = -1
    dep = session.get(Deployment, key)
    if dep is None:
        raise NotFoundError(f"unknown deployment {deployment_id!r}")
    return dep


def create_deployment(
    session: Session,
    profiles: Mapping[str, DeviceProfile],
    model_ref: str,
    group_name: str,
    spec: RolloutSpec | None = None,
) -> Deployment:
    """Deploy ``name:version`` to a group and commit; older live deployments of that group become
    SUPERSEDED. Raises :class:`InvalidRequestError` (malformed ref), :class:`NotFoundError`
    (unknown model or group), :class:`UnusableError` when a compile the group's devices need has
    already failed (the message names the target and the reason, and how to retry the compile)."""
    name, version = parse_model_ref(model_ref)
    mv = get_model_version(session, name, version)
    group = get_group(session, group_name)
    failed = []
    retry_profiles = []
    for key, profile in needs_of(group_members(session, group), profiles).items():
        bundle = find_bundle(session, mv.id, key)
        if bundle is not None and bundle.status == BundleStatus.FAILED.value:
            failed.append(bundle.error or f"{bundle.target}: compile failed")
            retry_profiles.append(profile)
    if failed:
        flags = " ".join(f"--profile {p}" for p in sorted(retry_profiles))
        raise UnusableError(
            f"cannot deploy {mv.ref}: {compile_failure_message(failed)}; "
            f"retry the compile with `edgectl models compile {mv.ref} {flags}`"
        )
    now = utcnow()
    session.execute(
        update(Deployment)
        .where(Deployment.group_name == group.name, Deployment.state != DeploymentState.SUPERSEDED.value)
        .values(state=DeploymentState.SUPERSEDED.value, updated_at=now)
    )
    dep = Deployment(
        model_version_id=mv.id,
        group_name=group.name,
        state=DeploymentState.PENDING.value,
        spec=spec,
        created_at=now,
        updated_at=now,
    )
    session.add(dep)
    session.commit()
    return dep


def list_deployments(
    session: Session, limit: int | None = None, before: int | None = None
) -> list[Deployment]:
    """Deployments, newest first: at most ``limit``, with an id below ``before`` (paging)."""
    q = select(Deployment).order_by(Deployment.id.desc())
    if before is not None:
        q = q.where(Deployment.id < before)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


# What an operator may do to a rollout, and from which states (the controller does the rest).
OPERATOR_ACTIONS = ("pause", "resume", "abort", "rollback")


def act_on_deployment(session: Session, deployment_id: str | int, action: str) -> Deployment:
    """Apply an operator's ``action`` to a deployment and commit:

    - ``pause``: no new wave opens (devices already told go on); PAUSED;
    - ``resume``: a paused rollout goes on (RUNNING once the controller looks at it);
    - ``abort``: stop where it is, without rolling back: HALTED;
    - ``rollback``: HALTED, and every device it told the new model is told its previous models.

    Raises :class:`NotFoundError`, and :class:`UnusableError` for an action its state does not
    allow (the message says which state it is in)."""
    dep = get_deployment(session, deployment_id)
    state = DeploymentState(dep.state)
    new_state, error, rollback = state, dep.error, bool(dep.rollback)
    if action == "pause" and state in ADVANCING - {DeploymentState.SUCCEEDED}:
        new_state = DeploymentState.PAUSED
    elif action == "resume" and state == DeploymentState.PAUSED:
        new_state = DeploymentState.RUNNING if (dep.wave or -1) >= 0 else DeploymentState.PENDING
    elif action == "abort" and state in ADVANCING - {DeploymentState.SUCCEEDED}:
        new_state, error = DeploymentState.HALTED, "aborted by an operator"
    elif action == "rollback" and (state in ADVANCING or (state == DeploymentState.HALTED and not rollback)):
        new_state, rollback = DeploymentState.HALTED, True
        error = error or "rolled back by an operator"
    else:
        raise UnusableError(f"cannot {action} deployment {dep.id}: it is {state.value}")
    try:
        check_deployment_move(state, new_state)
    except IllegalMove as exc:
        raise UnusableError(f"cannot {action} deployment {dep.id}: {exc}") from None
    dep.state, dep.error, dep.rollback = new_state.value, error, rollback
    dep.updated_at = utcnow()
    session.commit()
    return dep
