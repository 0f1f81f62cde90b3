"""How a deployment rolls out (pure): its waves, gates and timers, as the operator asked for them.

A :class:`RolloutSpec` is stored with the deployment (a server restarted mid-rollout goes on with
the same one) and read by every decision. Waves are cumulative shares or counts of the group:
``1%,10%,50%,100%`` opens the first 1% of the devices (by a stable hash of their ids), then up to
10%, and so on; ``5,20,100%`` mixes counts and shares. ``ramp=(base, factor)`` makes an
exponential ramp instead: ``base`` devices, then ``base·factor``, ``base·factor²``... up to all.

Defaults: one wave of the whole group, no bake time, no failure tolerated (``max_failure_rate``
0 with ``min_executed`` 1: the first failure halts), a device timeout of 10 minutes, a
post-switch health window of 5 seconds, automatic roll-back on a failed gate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

from agent.contracts.codec import Contract
from agent.contracts.errors import ContractError

MAX_WAVES = 64


@dataclass(frozen=True)
class WaveSize(Contract):
    """One wave's cumulative size: ``percent`` of the group, or ``count`` devices."""

    WHERE: ClassVar[str] = "wave"
    OMIT_DEFAULTS: ClassVar[bool] = True

    percent: float | None = None
    count: int | None = None

    def check(self, where: str) -> None:
        if (self.percent is None) == (self.count is None):
            raise ContractError(f"{where}: give a percent or a count")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise ContractError(f"{where}.percent: must be above 0 and at most 100, not {self.percent}")
        if self.count is not None and self.count < 1:
            raise ContractError(f"{where}.count: must be at least 1, not {self.count}")

    def devices(self, n: int) -> int:
        """How many of ``n`` devices this wave reaches (a share rounds up: 1% of 20 is 1)."""
        if self.count is not None:
            return min(n, self.count)
        assert self.percent is not None
        return min(n, math.ceil(n * self.percent / 100 - 1e-9))

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class QualityGates(Contract):
    """Model-quality gates from telemetry, per wave, against the previous version on the same
    devices: ``max_error_rate`` (share of failed requests), ``max_p95_regression`` (new p95 over
    the previous version's, e.g. 1.5), ``max_offload_ratio`` (share sent to the cloud),
    ``max_prediction_psi`` (population stability index of the predicted classes; 0.25 is the
    usual "shifted" mark). ``None``: that gate is off."""

    WHERE: ClassVar[str] = "gates"
    OMIT_DEFAULTS: ClassVar[bool] = True

    max_error_rate: float | None = None
    max_p95_regression: float | None = None
    max_offload_ratio: float | None = None
    max_prediction_psi: float | None = None
    min_requests: int = 20  # fewer requests in a wave than this: the quality gates wait

    def check(self, where: str) -> None:
        for name in ("max_error_rate", "max_offload_ratio"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise ContractError(f"{where}.{name}: must be between 0 and 1, not {v}")
        if self.max_p95_regression is not None and self.max_p95_regression < 1:
            raise ContractError(f"{where}.max_p95_regression: must be at least 1 (1.5 = 50% slower)")
        if self.max_prediction_psi is not None and self.max_prediction_psi <= 0:
            raise ContractError(f"{where}.max_prediction_psi: must be above 0")
        if self.min_requests < 0:
            raise ContractError(f"{where}.min_requests: must not be negative")

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.max_error_rate,
                self.max_p95_regression,
                self.max_offload_ratio,
                self.max_prediction_psi,
            )
        )


@dataclass(frozen=True)
class RolloutSpec(Contract):
    """A deployment's rollout plan. See the module docstring for the defaults."""

    WHERE: ClassVar[str] = "rollout"
    OMIT_DEFAULTS: ClassVar[bool] = True

    waves: tuple[WaveSize, ...] = (WaveSize(percent=100.0),)
    ramp_base: int | None = None
    ramp_factor: float | None = None
    bake_time_s: float = 0.0
    max_failure_rate: float = 0.0
    min_executed: int = 1
    max_per_minute: int | None = None
    device_timeout_s: float = 600.0
    health_window_s: float = 5.0
    auto_rollback: bool = True
    gates: QualityGates = field(default_factory=QualityGates)

    def check(self, where: str) -> None:
        if not self.waves:
            raise ContractError(f"{where}.waves: at least one wave")
        if len(self.waves) > MAX_WAVES:
            raise ContractError(f"{where}.waves: at most {MAX_WAVES} waves")
        if (self.ramp_base is None) != (self.ramp_factor is None):
            raise ContractError(f"{where}: a ramp needs both its base and its factor")
        if self.ramp_base is not None and self.ramp_base < 1:
            raise ContractError(f"{where}.ramp_base: must be at least 1")
        if self.ramp_factor is not None and self.ramp_factor <= 1:
            raise ContractError(f"{where}.ramp_factor: must be above 1")
        if not 0 <= self.max_failure_rate <= 1:
            raise ContractError(f"{where}.max_failure_rate: must be between 0 and 1")
        if self.min_executed < 1:
            raise ContractError(f"{where}.min_executed: must be at least 1")
        if self.max_per_minute is not None and self.max_per_minute < 1:
            raise ContractError(f"{where}.max_per_minute: must be at least 1")
        for name in ("bake_time_s", "health_window_s"):
            if not 0 <= getattr(self, name) <= 7 * 86400:
                raise ContractError(f"{where}.{name}: must be between 0 and a week")
        if not 1 <= self.device_timeout_s <= 7 * 86400:
            raise ContractError(f"{where}.device_timeout_s: must be between 1 s and a week")

    def bounds(self, n: int) -> tuple[int, ...]:
        """The cumulative device count each wave reaches in a group of ``n``: non-decreasing,
        the first at least 1 (for ``n`` > 0), the last ``n``. Empty waves (a share that rounds
        to the previous wave's size) are dropped."""
        if n <= 0:
            return (0,)
        if self.ramp_base is not None and self.ramp_factor is not None:
            sizes: list[int] = []
            size = float(self.ramp_base)
            while int(size) < n and len(sizes) < MAX_WAVES - 1:
                sizes.append(max(1, int(size)))
                size *= self.ramp_factor
            sizes.append(n)
        else:
            sizes = [w.devices(n) for w in self.waves]
            if sizes[-1] < n:
                sizes.append(n)  # the last wave always reaches the whole group
        out: list[int] = []
        for s in sizes:
            s = max(1, min(n, s))
            if not out or s > out[-1]:
                out.append(s)
        return tuple(out)


_WAVE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*%|(\d+))\s*$")


def parse_waves(text: str) -> tuple[WaveSize, ...]:
    """``"1%,10%,50%,100%"`` or ``"5,20,100%"`` → waves. Raises :class:`ContractError` saying
    which item is wrong."""
    waves = []
    for i, item in enumerate(text.split(",")):
        m = _WAVE.match(item)
        if not m:
            raise ContractError(
                f"waves[{i}]: {item.strip()!r} is neither a share like 10% nor a count like 5"
            )
        w = WaveSize(percent=float(m.group(1))) if m.group(1) else WaveSize(count=int(m.group(2)))
        w.check(f"waves[{i}]")
        waves.append(w)
    if not waves:
        raise ContractError("waves: at least one wave")
    return tuple(waves)


def parse_ramp(text: str) -> tuple[int, float]:
    """``"1,2"`` → (base 1, factor 2). Raises :class:`ContractError`."""
    parts = [p.strip() for p in text.split(",")]
    try:
        base, factor = int(parts[0]), float(parts[1])
        if len(parts) != 2:
            raise ValueError
    except (ValueError, IndexError):
        raise ContractError(f"ramp: expected BASE,FACTOR such as 1,2, not {text!r}") from None
    return base, factor
