"""Telemetry (device → server, ``edgefleet/v1/devices/{id}/telemetry``, QoS 1): what a device
measured over one window, for one model.

This module is the single definition of the message; the agent (:mod:`agent.telemetry`), the
fleet server's ingest and the fleet simulator all build or read it through :class:`Telemetry`.

Every figure is optional, so a device sends what it has (an idle device has no latency). The
window is ``[ts - window_s, ts]`` by the device's clock. A device serving several models sends
one message per model per window; the process figures (CPU, memory, temperature) are the same in
each.

- ``requests`` / ``errors``: requests in the window and the failed ones (``errors <= requests``).
- ``latency``: percentiles over the window's answered requests, in milliseconds.
- ``throughput_rps``: answered requests per second over the window.
- ``queue_depth``: requests waiting for the model when the window closed.
- ``offload_ratio``: the share of answered requests served by the cloud endpoint (0..1).
- ``classes``: predicted-class counts (argmax of the first output, for a ``[batch, classes]``
  output), class index as a string → count; at most :data:`MAX_CLASSES` entries.
- ``outputs``: per-output statistics when the model is not a classifier (output name →
  :class:`OutputStats`); at most :data:`MAX_OUTPUTS` entries.
- ``cpu_percent`` / ``memory_mb`` / ``temperature_c``: the agent process's CPU (100 = one
  core) and resident memory, and the hottest readable thermal zone.
- ``seq``: the message's number, counting up per agent run (gaps show what was lost).
- ``dropped``: messages the device's offline buffer dropped (oldest first) since it last sent
  a count; what was lost, so the server knows.

Bounds (:meth:`Telemetry.check`) keep a message well under the server's telemetry payload bound
(:class:`fleet_server.limits.MessageLimits`, 64 KiB): at every bound at once (256 classes of
16-char keys, 16 outputs of 128-char names, the largest counts) a message is under 16 KiB.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError

TELEMETRY_SCHEMA = "edgefleet.telemetry/1"
MAX_CLASSES = 256
MAX_CLASS_KEY_CHARS = 16
MAX_OUTPUTS = 16
MAX_OUTPUT_NAME_CHARS = 128
MAX_MODEL_CHARS = 300  # a name:version ref, as the server's ref column holds
MAX_COUNT = 2**53 - 1  # what a JSON reader holds exactly


@dataclass(frozen=True)
class Latency(Contract):
    """Request latency percentiles over the window, in milliseconds."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


@dataclass(frozen=True)
class OutputStats(Contract):
    """Statistics of one output's values over the window (``count`` values seen; a device may
    sample large outputs, so ``count`` need not be every element)."""

    count: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


@dataclass(frozen=True)
class Telemetry(Contract):
    """One window of one model's figures; see the module docstring for each field."""

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
    outputs: dict[str, OutputStats] | None = None
    seq: int | None = None
    dropped: int = 0

    def check(self, where: str) -> None:
        if self.window_s < 0 or self.requests < 0 or self.errors < 0 or self.dropped < 0:
            raise ContractError(f"{where}: window_s, requests, errors and dropped must not be negative")
        if max(self.requests, self.dropped, self.seq or 0) > MAX_COUNT:
            raise ContractError(f"{where}: a count is over {MAX_COUNT}")
        if self.errors > self.requests:
            raise ContractError(f"{where}.errors: {self.errors} errors in {self.requests} requests")
        if self.offload_ratio is not None and not 0.0 <= self.offload_ratio <= 1.0:
            raise ContractError(f"{where}.offload_ratio: must be between 0 and 1")
        if self.queue_depth is not None and not 0 <= self.queue_depth <= MAX_COUNT:
            raise ContractError(f"{where}.queue_depth: must be between 0 and {MAX_COUNT}")
        if self.seq is not None and self.seq < 0:
            raise ContractError(f"{where}.seq: must not be negative")
        if self.model is not None and not 0 < len(self.model) <= MAX_MODEL_CHARS:
            raise ContractError(f"{where}.model: must be 1 to {MAX_MODEL_CHARS} characters")
        self._check_classes(where)
        self._check_outputs(where)

    def _check_classes(self, where: str) -> None:
        if self.classes is None:
            return
        if len(self.classes) > MAX_CLASSES:
            raise ContractError(f"{where}.classes: {len(self.classes)} classes, at most {MAX_CLASSES}")
        for key, n in self.classes.items():
            if not 0 < len(key) <= MAX_CLASS_KEY_CHARS:
                raise ContractError(f"{where}.classes: a key must be 1 to {MAX_CLASS_KEY_CHARS} characters")
            if not 0 <= n <= MAX_COUNT:
                raise ContractError(f"{where}.classes.{key}: count must be between 0 and {MAX_COUNT}")

    def _check_outputs(self, where: str) -> None:
        if self.outputs is None:
            return
        if len(self.outputs) > MAX_OUTPUTS:
            raise ContractError(f"{where}.outputs: {len(self.outputs)} outputs, at most {MAX_OUTPUTS}")
        for name, st in self.outputs.items():
            if not 0 < len(name) <= MAX_OUTPUT_NAME_CHARS:
                raise ContractError(
                    f"{where}.outputs: a name must be 1 to {MAX_OUTPUT_NAME_CHARS} characters"
                )
            if not 0 <= st.count <= MAX_COUNT:
                raise ContractError(f"{where}.outputs.{name}.count: must be between 0 and {MAX_COUNT}")
            if not all(_finite(v) for v in (st.mean, st.std, st.min, st.max)):
                raise ContractError(f"{where}.outputs.{name}: figures must be finite")
