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
from fleet_server.rollout import compile_failure_message
from fleet_server.states import BundleStatus, DeploymentState


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
    session: Session, profiles: Mapping[str, DeviceProfile], model_ref: str, group_name: str
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
        created_at=now,
        updated_at=now,
    )
    session.add(dep)
    session.commit()
    return dep


def list_deployments(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.id.desc())))
