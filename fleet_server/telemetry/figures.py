"""Aggregate telemetry figures of one model over a set of devices since a time: what the rollout
gates and the REST summary read.

:func:`model_figures` reads the raw windows (kept for the raw retention, 24 h by default) through
the ``(model, ts)`` index, with the device filter applied in chunks of :data:`ID_CHUNK` ids, and
sums in SQL; only the class counts and output statistics (JSON) are summed in Python, from the
windows that have them. :func:`rollup_figures` reads the one-minute rollups instead (for spans
older than the raw retention). Both weight latency and offload figures by each window's answered
requests (``requests - errors``), so a busy device counts for more than an idle one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.orm import Session

from fleet_server.db import TelemetryRollup, TelemetryRow

ID_CHUNK = 500  # device ids per IN (...) list: well under every database's bound on parameters


@dataclass(frozen=True)
class ModelFigures:
    """Summed figures of a model's telemetry. ``error_rate``, the latency percentiles and
    ``offload_ratio`` are ``None`` when nothing was measured; latency is request-weighted."""

    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    p95_ms: float | None = None
    offload_ratio: float | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    output_means: dict[str, float] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    windows: int = 0
    devices: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "offload_ratio": self.offload_ratio,
            "class_counts": self.class_counts,
            "output_means": self.output_means,
            "windows": self.windows,
            "devices": self.devices,
        }


@dataclass
class _Sums:
    windows: int = 0
    requests: int = 0
    errors: int = 0
    latency_weight: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    offload_weight: int = 0
    offload: float = 0.0
    devices: set[str] = field(default_factory=set)
    classes: dict[str, int] = field(default_factory=dict)
    out_count: dict[str, float] = field(default_factory=dict)
    out_sum: dict[str, float] = field(default_factory=dict)

    def add_classes(self, classes: dict[str, Any] | None) -> None:
        for k, n in (classes or {}).items():
            if isinstance(n, int):
                self.classes[k] = self.classes.get(k, 0) + n

    def add_output(self, name: str, count: float, total: float) -> None:
        self.out_count[name] = self.out_count.get(name, 0.0) + count
        self.out_sum[name] = self.out_sum.get(name, 0.0) + total

    def figures(self) -> ModelFigures:
        def per(value: float, weight: int) -> float | None:
            return None if weight <= 0 else value / weight

        return ModelFigures(
            requests=self.requests,
            errors=self.errors,
            error_rate=None if self.requests <= 0 else self.errors / self.requests,
            p95_ms=per(self.p95, self.latency_weight),
            offload_ratio=per(self.offload, self.offload_weight),
            class_counts=dict(sorted(self.classes.items())),
            output_means={k: self.out_sum[k] / n for k, n in sorted(self.out_count.items()) if n > 0},
            p50_ms=per(self.p50, self.latency_weight),
            p99_ms=per(self.p99, self.latency_weight),
            windows=self.windows,
            devices=len(self.devices),
        )


def chunks(ids: Collection[str] | None) -> Iterator[list[str] | None]:
    """``None`` once (no device filter), else the ids in lists of :data:`ID_CHUNK`."""
    if ids is None:
        yield None
        return
    items = sorted(set(ids))
    for i in range(0, len(items), ID_CHUNK):
        yield items[i : i + ID_CHUNK]


def _int(v: Any) -> int:
    return int(v or 0)


def _float(v: Any) -> float:
    return float(v or 0.0)


def model_figures(
    session: Session, device_ids: Collection[str] | None, model_ref: str, since: datetime
) -> ModelFigures:
    """The figures of ``model_ref`` (``name:version``) on ``device_ids`` (``None``: every device)
    over the raw windows ending at or after ``since``. An empty ``device_ids`` gives zeros."""
    if device_ids is not None and not device_ids:
        return ModelFigures()
    T = TelemetryRow
    answered = T.requests - T.errors
    acc = _Sums()
    for ids in chunks(device_ids):
        where: list[ColumnElement[bool]] = [T.model == model_ref, T.ts >= since]
        if ids is not None:
            where.append(T.device_id.in_(ids))
        row = session.execute(
            select(
                func.count(),
                func.sum(T.requests),
                func.sum(T.errors),
                func.sum(case((T.p95_ms.is_not(None), answered), else_=0)),
                func.sum(T.p50_ms * answered),
                func.sum(T.p95_ms * answered),
                func.sum(T.p99_ms * answered),
                func.sum(case((T.offload_ratio.is_not(None), answered), else_=0)),
                func.sum(T.offload_ratio * answered),
            ).where(*where)
        ).one()
        acc.windows += _int(row[0])
        acc.requests += _int(row[1])
        acc.errors += _int(row[2])
        acc.latency_weight += _int(row[3])
        acc.p50 += _float(row[4])
        acc.p95 += _float(row[5])
        acc.p99 += _float(row[6])
        acc.offload_weight += _int(row[7])
        acc.offload += _float(row[8])
        acc.devices.update(session.scalars(select(T.device_id).where(*where).distinct()))
        stats = select(T.classes, T.outputs).where(
            *where, (T.classes.is_not(None)) | (T.outputs.is_not(None))
        )
        for classes, outputs in session.execute(stats):
            acc.add_classes(classes)
            for name, st in (outputs or {}).items():
                if isinstance(st, dict) and st.get("mean") is not None and st.get("count"):
                    acc.add_output(name, float(st["count"]), float(st["mean"]) * float(st["count"]))
    return acc.figures()


def figures_since(
    session: Session, device_ids: Collection[str], model_ref: str, since_s: float
) -> ModelFigures | None:
    """:func:`model_figures` since the Unix time ``since_s``, ``None`` when no window was stored:
    the shape of the rollout controller's quality source (``QualitySource``: session, device
    ids, model ref, since in epoch seconds)."""
    figures = model_figures(session, device_ids, model_ref, datetime.fromtimestamp(since_s, UTC))
    return figures if figures.windows else None


def rollup_figures(
    session: Session,
    device_ids: Collection[str] | None,
    model_ref: str,
    since: datetime,
    until: datetime | None = None,
) -> ModelFigures:
    """:func:`model_figures` over the one-minute rollups whose minute starts in ``[since, until)``."""
    if device_ids is not None and not device_ids:
        return ModelFigures()
    R = TelemetryRollup
    acc = _Sums()
    for ids in chunks(device_ids):
        for r in session.scalars(_rollups(select(R), model_ref, since, until, ids)):
            acc.windows += r.windows
            acc.requests += r.requests
            acc.errors += r.errors
            acc.latency_weight += r.latency_weight
            acc.p50 += r.p50_sum
            acc.p95 += r.p95_sum
            acc.p99 += r.p99_sum
            acc.offload_weight += r.offload_weight
            acc.offload += r.offload_sum
            acc.devices.add(r.device_id)
            acc.add_classes(r.classes)
            for name, st in (r.outputs or {}).items():
                acc.add_output(name, _float(st.get("count")), _float(st.get("sum")))
    return acc.figures()


def _rollups(
    q: Select[Any], model_ref: str, since: datetime, until: datetime | None, ids: Iterable[str] | None
) -> Select[Any]:
    R = TelemetryRollup
    q = q.where(R.model == model_ref, R.bucket >= since)
    if until is not None:
        q = q.where(R.bucket < until)
    if ids is not None:
        q = q.where(R.device_id.in_(list(ids)))
    return q
