"""A wave's gates (pure): install outcomes and model quality, judged over plain figures.

- **Install gate**: once at least ``min_executed`` devices of the waves opened so far have ended
  (HEALTHY, FAILED or TIMED_OUT), the share that FAILED or TIMED_OUT must not exceed
  ``max_failure_rate``. Roll-backs are not counted: they are the rollout's own doing.
- **Quality gates** (:class:`~fleet_server.rollout.spec.QualityGates`), from the telemetry of the
  devices running the new version against the previous version's figures on the same devices,
  once the new version has served at least ``min_requests`` requests: error rate, p95 latency
  regression, offload ratio, and prediction drift as the population stability index of the
  predicted classes.

:func:`judge` returns a :class:`Verdict`: ``failed`` with the reasons (each naming the figure
and its threshold), else which figures were checked. The controller halts on a failed verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleet_server.rollout.spec import RolloutSpec

PSI_FLOOR = 1e-4  # a class seen in one distribution and not the other counts as this share


@dataclass(frozen=True)
class Outcomes:
    """How the devices of the opened waves ended so far."""

    healthy: int = 0
    failed: int = 0
    timed_out: int = 0

    @property
    def executed(self) -> int:
        return self.healthy + self.failed + self.timed_out

    @property
    def failure_rate(self) -> float:
        return (self.failed + self.timed_out) / self.executed if self.executed else 0.0


@dataclass(frozen=True)
class Quality:
    """Telemetry figures of one model version over a set of devices and a time range."""

    requests: int = 0
    errors: int = 0
    p95_ms: float | None = None
    offload_ratio: float | None = None
    class_counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Verdict:
    failed: bool
    reasons: tuple[str, ...] = ()
    checked: tuple[str, ...] = ()
    figures: Mapping[str, float | None] = field(default_factory=dict)


def psi(expected: Mapping[str, int], actual: Mapping[str, int]) -> float | None:
    """Population stability index of ``actual``'s class distribution against ``expected``'s:
    Σ (a - e) · ln(a / e) over the classes of either, with shares floored at ``PSI_FLOOR``.
    ``None`` when either has no counts."""
    e_total, a_total = sum(expected.values()), sum(actual.values())
    if e_total <= 0 or a_total <= 0:
        return None
    out = 0.0
    for k in set(expected) | set(actual):
        e = max(expected.get(k, 0) / e_total, PSI_FLOOR)
        a = max(actual.get(k, 0) / a_total, PSI_FLOOR)
        out += (a - e) * math.log(a / e)
    return out


def judge(
    spec: RolloutSpec, outcomes: Outcomes, new: Quality | None = None, old: Quality | None = None
) -> Verdict:
    """Judge the opened waves: ``outcomes`` of their devices, ``new`` the new version's
    telemetry on them since they switched, ``old`` the previous version's on the same devices
    before (either ``None``: no telemetry)."""
    reasons: list[str] = []
    checked: list[str] = []
    figures: dict[str, float | None] = {"failure_rate": outcomes.failure_rate, "executed": outcomes.executed}
    if outcomes.executed >= spec.min_executed:
        checked.append("failure_rate")
        if outcomes.failure_rate > spec.max_failure_rate:
            reasons.append(
                f"{outcomes.failed} failed and {outcomes.timed_out} timed out of {outcomes.executed} devices "
                f"({outcomes.failure_rate:.0%} > {spec.max_failure_rate:.0%} allowed)"
            )
    g = spec.gates
    if new is not None and g.any and new.requests >= g.min_requests:
        rate = new.error_rate
        figures["error_rate"] = rate
        if g.max_error_rate is not None and rate is not None:
            checked.append("error_rate")
            if rate > g.max_error_rate:
                reasons.append(f"error rate {rate:.1%} > {g.max_error_rate:.1%}")
        if g.max_offload_ratio is not None and new.offload_ratio is not None:
            checked.append("offload_ratio")
            figures["offload_ratio"] = new.offload_ratio
            if new.offload_ratio > g.max_offload_ratio:
                reasons.append(f"offload ratio {new.offload_ratio:.1%} > {g.max_offload_ratio:.1%}")
        if old is not None and old.requests >= g.min_requests:
            if g.max_p95_regression is not None and new.p95_ms is not None and old.p95_ms:
                ratio = new.p95_ms / old.p95_ms
                checked.append("p95_regression")
                figures["p95_regression"] = ratio
                if ratio > g.max_p95_regression:
                    reasons.append(
                        f"p95 latency {new.p95_ms:.1f} ms is {ratio:.2f}x the previous version's "
                        f"{old.p95_ms:.1f} ms (> {g.max_p95_regression:g}x)"
                    )
            if g.max_prediction_psi is not None:
                drift = psi(old.class_counts, new.class_counts)
                if drift is not None:
                    checked.append("prediction_psi")
                    figures["prediction_psi"] = drift
                    if drift > g.max_prediction_psi:
                        reasons.append(
                            f"predicted classes shifted: PSI {drift:.3f} > {g.max_prediction_psi:g}"
                        )
    return Verdict(bool(reasons), tuple(reasons), tuple(checked), figures)
