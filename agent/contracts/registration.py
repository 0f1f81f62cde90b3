"""Enrollment (device → server, ``POST /api/v1/devices/enroll``) and the server's answer.

The device sends who it is, the enrollment token it was given and a CSR for the key it made
(:class:`EnrollmentRequest`); the server answers with its certificate, the fleet CA, the broker to
use and the TUF root (:class:`EnrollmentResponse`). The fleet server's request schema for its
OpenAPI document is checked against :class:`EnrollmentRequest` by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError
from agent.contracts.topics import TOPIC_ROOT

MQTT_PROTOCOLS = ("5", "3.1.1")


@dataclass(frozen=True)
class EnrollmentRequest(Contract):
    """``facts`` are what the agent found out about the device (arch, os, python, cpu_count,
    memory_mb, runtimes ``{name: version|null}``, agent_version, inference_url); ``csr`` is a PEM
    certificate signing request for the key the device made (the key never leaves it)."""

    WHERE: ClassVar[str] = "enrollment"

    token: str
    device_id: str
    profile: str
    csr: str
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
    tls: bool = False  # mTLS with the device's certificate (the fleet's Mosquitto always says true)

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
class EnrollmentResponse(Contract):
    """``certificate`` (PEM, CN = device id) and ``ca_certificate`` (the fleet CA); ``device_api``
    the mTLS base URL for downloads and renewal (``None``: the server URL); ``tuf_root`` the TUF
    root metadata to trust (``None`` when the server has no TUF repository); ``device`` the
    server's view of the device; ``server_time`` its clock (seconds since the epoch)."""

    WHERE: ClassVar[str] = "enrollment answer"

    certificate: str
    ca_certificate: str
    mqtt: MqttSettings
    device_api: str | None = None
    tuf_root: dict[str, Any] | None = None
    device: dict[str, Any] = field(default_factory=dict)
    server_time: float | None = None


@dataclass(frozen=True)
class RenewalResponse(Contract):
    """The answer to ``POST /api/v1/device/renew`` on the device listener (mTLS)."""

    WHERE: ClassVar[str] = "renewal answer"

    certificate: str
    ca_certificate: str
    not_after: str = ""
    server_time: float | None = None
