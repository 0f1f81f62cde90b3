"""Prometheus metrics, one registry per app (so several servers in one process, as in tests, don't
collide). Gauges that mirror the database (devices online, deployments by state) are read at
scrape time by a collector, never kept in step by hand."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import Deployment, Device
from fleet_server.states import DeploymentState

log = logging.getLogger(__name__)

# Distinct model label values on the per-model telemetry counters: a device names its model, so
# an unbounded set would let devices grow the scrape without end. Past the bound: "_other".
MAX_MODEL_LABELS = 256
OTHER_MODEL = "_other"


class _FleetCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        online = GaugeMetricFamily("edgefleet_devices_online", "Devices whose last status was online")
        total = GaugeMetricFamily("edgefleet_devices", "Registered devices")
        deps = GaugeMetricFamily("edgefleet_deployments", "Deployments by state", labels=["state"])
        try:
            with self._sessions() as s:
                n_online = (
                    s.scalar(select(func.count()).select_from(Device).where(Device.online.is_(True))) or 0
                )
                n_total = s.scalar(select(func.count()).select_from(Device)) or 0
                by_state = dict(
                    s.execute(select(Deployment.state, func.count()).group_by(Deployment.state)).all()
                )
        except Exception:  # a scrape must not fail because the DB hiccuped
            log.exception("metrics: database read failed")
            return
        online.add_metric([], n_online)
        total.add_metric([], n_total)
        for state in DeploymentState:
            deps.add_metric([state.value], by_state.get(state.value, 0))
        yield online
        yield total
        yield deps


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.compile_seconds = Histogram(
            "edgefleet_compile_duration_seconds",
            "Compile job duration",
            ["target", "status"],
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.mqtt_messages = Counter(
            "edgefleet_mqtt_messages",
            "MQTT messages by direction and kind",
            ["direction", "kind"],
            registry=self.registry,
        )
        self.mqtt_rejected = Counter(
            "edgefleet_mqtt_rejected_messages",
            "MQTT messages ignored because they broke their contract",
            ["kind"],
            registry=self.registry,
        )
        # Every device message dropped or whose handling failed, by topic kind and a fixed reason
        # word (fleet_server.inbound's, "contract", "topic", or "error" for anything unexpected).
        self.mqtt_messages_rejected = Counter(
            "edgefleet_server_mqtt_messages_rejected",
            "Device MQTT messages dropped (or whose handling failed), by topic kind and reason",
            ["topic_kind", "reason"],
            registry=self.registry,
        )
        self.mqtt_connected = Counter(
            "edgefleet_mqtt_connects", "Successful (re)connections to the broker", registry=self.registry
        )
        # Telemetry ingest (fleet_server.telemetry).
        self.telemetry_messages = Counter(
            "edgefleet_telemetry_messages",
            "Telemetry messages by outcome "
            "(stored, unknown_device, duplicate, dropped from a full ingest queue, error)",
            ["outcome"],
            registry=self.registry,
        )
        self.telemetry_device_dropped = Counter(
            "edgefleet_telemetry_device_dropped",
            "Telemetry messages devices report having dropped from their offline buffers",
            registry=self.registry,
        )
        self.model_requests = Counter(
            "edgefleet_model_requests",
            "Inference requests devices reported, by model (name:version)",
            ["model"],
            registry=self.registry,
        )
        self.model_errors = Counter(
            "edgefleet_model_errors",
            "Failed inference requests devices reported, by model (name:version)",
            ["model"],
            registry=self.registry,
        )
        self._models: set[str] = set()
        self._models_lock = threading.Lock()

    def model_label(self, model: str) -> str:
        """``model`` as a label value, or ``_other`` once :data:`MAX_MODEL_LABELS` are in use."""
        with self._models_lock:
            if model in self._models:
                return model
            if len(self._models) >= MAX_MODEL_LABELS:
                return OTHER_MODEL
            self._models.add(model)
            return model

    def watch_db(self, sessions: sessionmaker[Session]) -> None:
        """Register the gauges read from the database at scrape time: the fleet's (devices,
        deployments) and the per-model telemetry aggregates (:mod:`fleet_server.telemetry.gauges`).
        Other parts add their own collectors with :meth:`register`."""
        from fleet_server.telemetry.gauges import TelemetryCollector

        self.registry.register(_FleetCollector(sessions))
        self.registry.register(TelemetryCollector(sessions))

    def register(self, collector: Collector) -> None:
        """Add a collector (e.g. the rollout controller's per-rollout figures) to this registry."""
        self.registry.register(collector)
