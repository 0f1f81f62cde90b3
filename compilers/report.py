"""What a compile made and how it compares with FP32 (:class:`CompileReport`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contracts.manifest import Manifest, MixedPrecision, OutputMetric, latency_ratio, size_ratio
from compilers.preflight import FitResult


@dataclass(frozen=True)
class CompileReport:
    """The outcome of a successful compile: the bundle's place and manifest, and the figures an
    operator looks at (size, agreement, accuracy, latency, fit). ``latency_ms`` is measured on the
    build host, and only when the bundle's own runtime ran here."""

    profile: str
    target: str
    precision: str
    out_dir: Path
    manifest: Manifest
    size_bytes: int
    fp32_size_bytes: int
    validation_samples: int
    top1_agreement: float | None
    max_abs_error: float
    mean_abs_error: float
    accuracy: float | None
    fp32_accuracy: float | None
    latency_ms: float | None
    fp32_latency_ms: float | None
    checked_with: str | None
    host_vnni: bool | None
    fit: FitResult
    notes: tuple[str, ...] = ()
    intake_steps: tuple[str, ...] = ()  # what compilers.intake did to the source, in order
    strategy: str | None = None  # the converter strategy that worked, for targets that try several
    metrics: tuple[OutputMetric, ...] = ()  # every output's gate figure
    calibration_method: str | None = None
    mixed: MixedPrecision | None = None  # layers kept in float, and the cost
    precision_choice: str | None = None  # --precision auto: what was chosen and why
    attempts: tuple[str, ...] = ()  # attempts the gate (or the latency rule) refused

    @property
    def size_ratio(self) -> float:
        return size_ratio(self.size_bytes, self.fp32_size_bytes)

    @property
    def latency_ratio(self) -> float | None:
        return latency_ratio(self.latency_ms, self.fp32_latency_ms)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``edgectl compile -o json``)."""

        def r(x: float | None, nd: int = 4) -> float | None:
            return None if x is None else round(x, nd)

        return {
            "profile": self.profile,
            "target": self.target,
            "precision": self.precision,
            "out_dir": str(self.out_dir),
            "size_bytes": self.size_bytes,
            "fp32_size_bytes": self.fp32_size_bytes,
            "size_ratio": r(self.size_ratio),
            "validation_samples": self.validation_samples,
            "top1_agreement": r(self.top1_agreement),
            "max_abs_error": r(self.max_abs_error, 6),
            "mean_abs_error": r(self.mean_abs_error, 6),
            "accuracy": r(self.accuracy),
            "fp32_accuracy": r(self.fp32_accuracy),
            "latency_ms": r(self.latency_ms),
            "fp32_latency_ms": r(self.fp32_latency_ms),
            "latency_ratio": r(self.latency_ratio),
            "checked_with": self.checked_with,
            "host_vnni": self.host_vnni,
            "fit": self.fit.to_dict(),
            "notes": list(self.notes),
            "intake_steps": list(self.intake_steps),
            "strategy": self.strategy,
            "metrics": [m.to_dict() for m in self.metrics],
            "calibration_method": self.calibration_method,
            "mixed": None if self.mixed is None else self.mixed.to_dict(),
            "precision_choice": self.precision_choice,
            "attempts": list(self.attempts),
            "manifest": self.manifest.to_dict(),
        }
