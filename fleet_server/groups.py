"""Groups of devices: creation, lookup, resolving members, and their serving and offload
policies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from agent.contracts.policy import ServingPolicy
from fleet_server.db import Device, Group, GroupMember
from fleet_server.errors import ConflictError, NotFoundError
from fleet_server.membership import GroupSpec, members
from fleet_server.names import check_name
from fleet_server.rollout.policy import GroupOffload, GroupPolicy


def get_group(session: Session, name: str) -> Group:
    group = session.scalars(
        select(Group).where(Group.name == name).options(selectinload(Group.members))
    ).first()
    if group is None:
        raise NotFoundError(f"unknown group {name!r}")
    return group


def spec(group: Group) -> GroupSpec:
    return GroupSpec(group.name, frozenset(group.device_ids), dict(group.selector or {}))


def policy(group: Group) -> GroupPolicy:
    """The group's policies, the defaults where none is stored."""
    return GroupPolicy(group.serving or ServingPolicy(), group.offload or GroupOffload())


def group_members(session: Session, group: Group) -> list[Device]:
    """The registered devices in ``group`` (static members and selector matches), by id."""
    devices = {d.device_id: d for d in session.scalars(select(Device))}
    ids = members(spec(group), {d: dev.labels or {} for d, dev in devices.items()})
    return [devices[i] for i in ids]


def create_group(
    session: Session,
    name: str,
    device_ids: Iterable[str],
    selector: Mapping[str, str],
    serving: ServingPolicy | None = None,
    offload: GroupOffload | None = None,
) -> Group:
    """Create and commit a group with its policies (``None``: the defaults). Raises
    :class:`InvalidRequestError` for a bad name and :class:`ConflictError` when it exists. Named
    devices need not be registered yet."""
    check_name(name, "group name")
    if session.get(Group, name) is not None:
        raise ConflictError(f"group {name!r} exists")
    group = Group(name=name, selector=dict(selector), serving=serving, offload=offload)
    group.members = [GroupMember(device_id=d) for d in sorted(set(device_ids))]
    session.add(group)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"group {name!r} exists") from None
    return group


def set_group_policy(
    session: Session,
    name: str,
    serving: ServingPolicy | None = None,
    offload: GroupOffload | None = None,
) -> Group:
    """Replace the group's serving and/or offload policy (``None`` keeps the stored one; an empty
    policy is the defaults) and commit. The next rollout pass tells the members of the group's
    deployment. Raises :class:`NotFoundError` for an unknown group."""
    group = get_group(session, name)
    if serving is not None:
        group.serving = serving
    if offload is not None:
        group.offload = offload
    session.commit()
    return group
