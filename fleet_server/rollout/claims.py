"""Which deployment a device follows (pure).

A device follows the newest live deployment among the groups it belongs to, so a device in two
groups never flips between two models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleet_server.membership import GroupSpec, is_member


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
