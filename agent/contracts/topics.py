"""MQTT topic names under ``edgefleet/v1``, built and parsed in one place.

Device ids become topic levels, so they are checked here: no ``/``, ``+``, ``#`` or NUL, which
would let one device's id reach into another's topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.contracts.errors import ContractError

TOPIC_ROOT = "edgefleet/v1"
SHARE_GROUP = "fleet-server"
Kind = Literal["desired", "reported", "telemetry", "status"]
KINDS: tuple[Kind, ...] = ("desired", "reported", "telemetry", "status")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is usable as a topic level and a file name, else raise."""
    # fullmatch: with match, "$" also matches before a trailing newline ("dev1\n" would pass).
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise ContractError(
            f"device id {device_id!r} is not valid: use 1-128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return device_id


@dataclass(frozen=True)
class DeviceTopic:
    device_id: str
    kind: Kind

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if self.kind not in KINDS:
            raise ContractError(f"unknown topic kind {self.kind!r}; known: {', '.join(KINDS)}")

    def __str__(self) -> str:
        return f"{TOPIC_ROOT}/devices/{self.device_id}/{self.kind}"

    @classmethod
    def parse(cls, topic: str) -> DeviceTopic:
        parts = topic.split("/")
        if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT or parts[2] != "devices":
            raise ContractError(f"not an EdgeFleet device topic: {topic!r}")
        kind = parts[4]
        if kind not in KINDS:
            raise ContractError(f"unknown topic kind {kind!r} in {topic!r}")
        return cls(parts[3], kind)


def device_topic(device_id: str, kind: Kind) -> str:
    return str(DeviceTopic(device_id, kind))


def server_subscriptions(shared: bool) -> list[str]:
    """Topics the fleet server reads. With ``shared`` (MQTT 5), replicas split them between them
    through ``$share/fleet-server/...``; MQTT 3.1.1 brokers get the plain filters."""
    filters = [f"{TOPIC_ROOT}/devices/+/{k}" for k in ("reported", "status", "telemetry")]
    if shared:
        return [f"$share/{SHARE_GROUP}/{f}" for f in filters]
    return filters
