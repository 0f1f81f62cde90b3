"""Who is in a group (pure): its static members plus the devices whose labels match its selector.

An empty selector matches no device, so a group made from a list of ids never sweeps in the
whole fleet by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GroupSpec:
    name: str
    devices: frozenset[str] = frozenset()
    selector: Mapping[str, str] = field(default_factory=dict)


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """True when ``selector`` is non-empty and every key in it has the same value in ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_member(group: GroupSpec, device_id: str, labels: Mapping[str, str]) -> bool:
    return device_id in group.devices or selector_matches(group.selector, labels)


def members(group: GroupSpec, devices: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The registered devices (``id → labels``) in ``group``, sorted by id."""
    return sorted(d for d, labels in devices.items() if is_member(group, d, labels))
