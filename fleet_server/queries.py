"""Database reads shared by the rollout controller, deployments and the API views: bundles by
build, the builds a set of devices needs, groups as membership specs, live deployments. Plus
:func:`ensure_bundle`, the one get-or-create of a bundle row. No decisions here
(:mod:`fleet_server.rollout` makes those)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from device_profiles import DeviceProfile
from fleet_server.build_settings import BuildKey, build_key
from fleet_server.db import Bundle, Deployment, Device, Group
from fleet_server.membership import GroupSpec
from fleet_server.states import BundleStatus, DeploymentState

log = logging.getLogger(__name__)


def group_specs(groups: Iterable[Group]) -> dict[str, GroupSpec]:
    """Group rows as the membership specs :mod:`fleet_server.membership` works on, by name."""
    return {g.name: GroupSpec(g.name, frozenset(g.device_ids), dict(g.selector or {})) for g in groups}


def all_groups(session: Session) -> dict[str, Group]:
    """Every group with its members loaded, by name."""
    return {g.name: g for g in session.scalars(select(Group).options(selectinload(Group.members)))}


def all_group_specs(session: Session) -> dict[str, GroupSpec]:
    return group_specs(all_groups(session).values())


def all_devices(session: Session) -> dict[str, Device]:
    return {d.device_id: d for d in session.scalars(select(Device))}


def needs_of(devices: Iterable[Device], profiles: Mapping[str, DeviceProfile]) -> dict[BuildKey, str]:
    """The builds ``devices`` need, each with the (alphabetically first) profile asking for it.
    Devices with an unknown profile need none (logged)."""
    out: dict[BuildKey, str] = {}
    for dev in sorted(devices, key=lambda d: d.profile):
        prof = profiles.get(dev.profile)
        if prof is None:
            log.warning("device %s has unknown profile %r; it gets no bundle", dev.device_id, dev.profile)
            continue
        out.setdefault(build_key(prof), prof.name)
    return out


def find_bundle(session: Session, mv_id: int, key: BuildKey) -> Bundle | None:
    """The bundle row of model version ``mv_id`` for build ``key``, if there is one."""
    return session.scalars(
        select(Bundle).where(
            Bundle.model_version_id == mv_id,
            Bundle.target == key.target,
            Bundle.precision == key.precision,
            Bundle.settings_key == key.settings_key,
        )
    ).first()


def ensure_bundle(session: Session, mv_id: int, key: BuildKey, profile: str) -> Bundle:
    """The bundle row for (model version, build key), created ``pending`` when missing."""
    bundle = find_bundle(session, mv_id, key)
    if bundle is None:
        bundle = Bundle(
            model_version_id=mv_id,
            target=key.target,
            precision=key.precision,
            settings_key=key.settings_key,
            settings=dict(key.settings),
            profile=profile,
            status=BundleStatus.PENDING.value,
        )
        session.add(bundle)
        session.flush()
    return bundle


def live_deployments_for_update(session: Session) -> Sequence[Deployment]:
    """The deployments not superseded, oldest first, with their device rows and model version,
    locked for this transaction."""
    return session.scalars(
        select(Deployment)
        .where(Deployment.state != DeploymentState.SUPERSEDED.value)
        .options(selectinload(Deployment.devices), selectinload(Deployment.model_version))
        .order_by(Deployment.id)
        # PostgreSQL: a concurrent POST /deployments superseding one of these waits for this pass
        # instead of being overwritten by it (SQLite: BEGIN IMMEDIATE serialises).
        .with_for_update(of=Deployment)
    ).all()


def pending_bundle_ids(session: Session) -> list[int]:
    """The bundles waiting for a compile, oldest first."""
    return list(
        session.scalars(
            select(Bundle.id).where(Bundle.status == BundleStatus.PENDING.value).order_by(Bundle.id)
        )
    )
