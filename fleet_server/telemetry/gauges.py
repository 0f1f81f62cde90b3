"""Per-model telemetry gauges for ``/metrics``, read from the database at scrape time.

Per-device figures would make one series per device (too many for Prometheus at fleet scale);
these are per model: devices running each version (from the devices' reports) and, over the raw
windows of the last :data:`RECENT` (5 minutes, through the ``ts`` index), the request-weighted
p95 latency, error and offload ratios and the fleet's throughput.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import Device, TelemetryRow

log = logging.getLogger(__name__)

RECENT = timedelta(minutes=5)
MAX_MODELS = 256  # series per gauge, at most (the busiest models first)


class TelemetryCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "edgefleet_devices_by_model",
            "Devices whose report says they serve a model version",
            labels=["model"],
        )
        p95 = GaugeMetricFamily(
            "edgefleet_model_latency_p95_ms",
            "Request-weighted p95 inference latency over the last 5 minutes of telemetry, ms",
            labels=["model"],
        )
        err = GaugeMetricFamily(
            "edgefleet_model_error_ratio",
            "Failed share of requests over the last 5 minutes",
            labels=["model"],
        )
        off = GaugeMetricFamily(
            "edgefleet_model_offload_ratio",
            "Share of answered requests offloaded to the cloud over the last 5 minutes",
            labels=["model"],
        )
        rps = GaugeMetricFamily(
            "edgefleet_model_throughput_rps",
            "Answered requests per second over the last 5 minutes, fleet-wide",
            labels=["model"],
        )
        reporting = GaugeMetricFamily(
            "edgefleet_model_devices_reporting",
            "Devices that sent telemetry in the last 5 minutes",
            labels=["model"],
        )
        T = TelemetryRow
        answered = T.requests - T.errors
        try:
            with self._sessions() as s:
                by_active = s.execute(
                    select(Device.active, func.count())
                    .where(Device.active.is_not(None))
                    .group_by(Device.active)
                    .order_by(func.count().desc())
                    .limit(MAX_MODELS)
                ).all()
                rows = s.execute(
                    select(
                        T.model,
                        func.sum(T.requests),
                        func.sum(T.errors),
                        func.sum(case((T.p95_ms.is_not(None), answered), else_=0)),
                        func.sum(T.p95_ms * answered),
                        func.sum(case((T.offload_ratio.is_not(None), answered), else_=0)),
                        func.sum(T.offload_ratio * answered),
                        func.sum(answered),
                        func.count(T.device_id.distinct()),
                    )
                    .where(T.ts >= datetime.now(UTC) - RECENT, T.model != "")
                    .group_by(T.model)
                    .order_by(func.sum(T.requests).desc())
                    .limit(MAX_MODELS)
                ).all()
        except Exception:  # a scrape must not fail because the database hiccuped
            log.exception("metrics: telemetry read failed")
            return
        for model, n in by_active:
            active.add_metric([str(model)], n)
        for model, req, errs, lat_w, p95_sum, off_w, off_sum, ans, devices in rows:
            if lat_w:
                p95.add_metric([model], float(p95_sum or 0) / lat_w)
            if req:
                err.add_metric([model], float(errs or 0) / req)
            if off_w:
                off.add_metric([model], float(off_sum or 0) / off_w)
            rps.add_metric([model], float(ans or 0) / RECENT.total_seconds())
            reporting.add_metric([model], devices)
        yield from (active, p95, err, off, rps, reporting)
