"""Groups of devices: creation, lookup, resolving members."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from fleet_server.db import Device, Group, GroupMember
from fleet_server.errors import ConflictError, NotFoundError
from fleet_server.membership import GroupSpec, members
from fleet_server.names import check_name


def get_group(session: Session, name: str) -> Group:
    group = session.scalars(
        select(Group).where(Group.name == name).options(selectinload(Group.members))
    ).first()
    if group is None:
        raise NotFoundError(f"unknown group {name!r}")
    return group


def spec(group: Group) -> GroupSpec:
    return GroupSpec(group.name, frozenset(group.device_ids), dict(group.selector or {}))


def group_members(session: Session, group: Group) -> list[Device]:
    """The registered devices in ``group`` (static members and selector matches), by id."""
    devices = {d.device_id: d for d in session.scalars(select(Device))}
    ids = members(spec(group), {d: dev.labels or {} for d, dev in devices.items()})
    return [devices[i] for i in ids]


def create_group(
    session: Session, name: str, device_ids: Iterable[str], selector: Mapping[str, str]
) -> Group:
    """Create and commit a group. Raises :class:`InvalidRequestError` for a bad name and
    :class:`ConflictError` when it exists. Named devices need not be registered yet."""
    check_name(name, "group name")
    if session.get(Group, name) is not None:
        raise ConflictError(f"group {name!r} exists")
    group = Group(name=name, selector=dict(selector))
    group.members = [GroupMember(device_id=d) for d in sorted(set(device_ids))]
    session.add(group)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"group {name!r} exists") from None
    return group
