"""Registration (device → server, ``POST /api/v1/devices/register``) and the server's answer.

The device sends who it is (:class:`RegistrationRequest`); the server answers with the device as
it recorded it and the broker to use (:class:`RegistrationResponse`). The fleet server's request
schema for its OpenAPI document is checked against :class:`RegistrationRequest` by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError
from agent.contracts.topics import TOPIC_ROOT

MQTT_PROTOCOLS = ("5", "3.1.1")


@dataclass(frozen=True)
class RegistrationRequest(Contract):
    """``facts`` are what the agent found out about the device (arch, os, python, cpu_count,
    memory_mb, runtimes ``{name: version|null}``, agent_version, inference_url)."""

    WHERE: ClassVar[str] = "registration"

    device_id: str
    profile: str
    labels: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MqttSettings(Contract):
    """The broker a device connects to. ``host`` unset, empty or a wildcard address means the
    fleet server's own host (the agent fills it in); ``port`` unset (``null``, read as 0) means
    the server has no broker yet, and the device asks again later."""

    host: str = ""
    port: int = 0
    protocol: str = "5"
    keepalive: int = 60
    topic_root: str = TOPIC_ROOT

    def check(self, where: str) -> None:
        if self.protocol not in MQTT_PROTOCOLS:
            raise ContractError(
                f"{where}.protocol: MQTT protocol {self.protocol!r} is not one of {', '.join(MQTT_PROTOCOLS)}"
            )
        if self.topic_root != TOPIC_ROOT:
            raise ContractError(
                f"{where}.topic_root: topic root {self.topic_root!r}; this agent speaks {TOPIC_ROOT!r}"
            )


@dataclass(frozen=True)
class RegistrationResponse(Contract):
    """``device`` is the server's view of the device; ``server_time`` its clock (seconds since
    the epoch) when it answered."""

    WHERE: ClassVar[str] = "registration answer"

    mqtt: MqttSettings
    device: dict[str, Any] = field(default_factory=dict)
    server_time: float | None = None
