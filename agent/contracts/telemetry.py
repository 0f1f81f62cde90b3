"""Telemetry (device → server, ``edgefleet/v1/devices/{id}/telemetry``): what a device measured
over one window.

Every figure is optional, so a device sends what it has (an idle device has no latency). The
window is ``[ts - window_s, ts]`` by the device's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError

TELEMETRY_SCHEMA = "edgefleet.telemetry/1"


@dataclass(frozen=True)
class Latency(Contract):
    """Request latency percentiles over the window, in milliseconds."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


@dataclass(frozen=True)
class Telemetry(Contract):
    """``requests`` and ``errors`` count the window's requests and failed ones; ``offload_ratio``
    is the share sent to the cloud endpoint; ``model`` the ``name:version`` serving;
    ``classes`` how many of the window's answers predicted each class (by class index as a
    string), for drift gates that compare versions."""

    WHERE: ClassVar[str] = "telemetry"
    SCHEMA: ClassVar[str | None] = TELEMETRY_SCHEMA

    device_id: str
    ts: float = field(default_factory=time.time, metadata={"missing": 0.0})
    window_s: float = 0.0
    model: str | None = None
    requests: int = 0
    errors: int = 0
    throughput_rps: float | None = None
    latency: Latency | None = None
    queue_depth: int | None = None
    offload_ratio: float | None = None
    cpu_percent: float | None = None
    memory_mb: float | None = None
    temperature_c: float | None = None
    classes: dict[str, int] | None = None

    def check(self, where: str) -> None:
        if self.window_s < 0 or self.requests < 0 or self.errors < 0:
            raise ContractError(f"{where}: window_s, requests and errors must not be negative")
        if self.errors > self.requests:
            raise ContractError(f"{where}.errors: {self.errors} errors in {self.requests} requests")
        if self.offload_ratio is not None and not 0.0 <= self.offload_ratio <= 1.0:
            raise ContractError(f"{where}.offload_ratio: must be between 0 and 1")
        if self.classes is not None and any(n < 0 for n in self.classes.values()):
            raise ContractError(f"{where}.classes: counts must not be negative")
