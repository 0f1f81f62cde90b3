"""Prometheus metrics, one registry per app (so several servers in one process, as in tests, don't
collide). Gauges that mirror the database (devices online, deployments by state) are read at
scrape time by a collector, never kept in step by hand."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import Deployment, Device
from fleet_server.states import DeploymentState

log = logging.getLogger(__name__)


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

    def watch_db(self, sessions: sessionmaker[Session]) -> None:
        self.registry.register(_FleetCollector(sessions))
