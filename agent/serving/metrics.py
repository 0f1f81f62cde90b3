"""Prometheus metrics of the inference server, in a registry of its own (one per server, so
several agents in one process — as in tests — don't collide)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Edge models answer in milliseconds; the buckets resolve 0.5 ms to 2.5 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class ModelSeries:
    """One served model's hot-path series, resolved once: ``labels()`` takes a lock and
    validates its arguments on every call, a few microseconds each, three times a request."""

    latency: Any  # the model's latency histogram child
    ok: Any  # its requests{outcome="ok"} counter child


class Metrics:
    MAX_CACHED_MODELS = 64  # a device serves a handful; a long-lived agent sees versions come and go

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._series: dict[tuple[str, str], ModelSeries] = {}
        self._series_lock = threading.Lock()
        self.latency = Histogram(
            "edgefleet_agent_inference_seconds",
            "Time from queueing a request on the device to its result (decode and encode excluded).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "edgefleet_agent_inference_requests",
            "Inference requests by outcome (ok, bad_request, not_found, not_ready, shed, deadline, error).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.served = Counter(
            "edgefleet_agent_served",
            "Inference requests answered, by where they ran (local or cloud).",
            ["where"],
            registry=self.registry,
        )
        self.offload_errors = Counter(
            "edgefleet_agent_offload_errors",
            "Requests the cloud endpoint failed or timed out on (each counted by the breaker).",
            registry=self.registry,
        )

        # The MQTT link's health: ``/v2/health/ready`` speaks of inference only (a device serves
        # without its broker), so a dead link shows here instead.
        self.mqtt_connected = Gauge(
            "edgefleet_agent_mqtt_connected",
            "1 while the agent's MQTT link to the broker is up, 0 otherwise.",
            registry=self.registry,
        )
        self.mqtt_refused = Counter(
            "edgefleet_agent_mqtt_messages_refused",
            "MQTT messages refused and quarantined, by topic kind and reason "
            "(too_large, too_deep, malformed, handler_error, quarantined).",
            ["topic", "reason"],
            registry=self.registry,
        )
        self.mqtt_loop_restarts = Counter(
            "edgefleet_agent_mqtt_loop_restarts",
            "Times the watchdog restarted a dead MQTT network loop.",
            registry=self.registry,
        )

        # Telemetry over MQTT (agent.telemetry): what was sent, kept offline, replayed or lost.
        self.telemetry_messages = Counter(
            "edgefleet_agent_telemetry_messages",
            "Telemetry messages by outcome (sent, buffered while offline, replayed from the buffer).",
            ["outcome"],
            registry=self.registry,
        )
        self.telemetry_dropped = Counter(
            "edgefleet_agent_telemetry_dropped",
            "Telemetry messages lost: dropped from the full offline buffer (oldest first) or unwritable.",
            registry=self.registry,
        )
        self.telemetry_buffered = Gauge(
            "edgefleet_agent_telemetry_buffered",
            "Telemetry messages waiting in the offline buffer.",
            registry=self.registry,
        )

        self.served_local = self.served.labels("local")
        self.served_cloud = self.served.labels("cloud")

    def model_series(self, name: str, version: str) -> ModelSeries:
        """The series of model ``name`` at ``version`` (a served model: label values stay few)."""
        key = (name, version)
        series = self._series.get(key)
        if series is None:
            series = ModelSeries(self.latency.labels(name, version), self.requests.labels(name, "ok"))
            with self._series_lock:
                if len(self._series) >= self.MAX_CACHED_MODELS:
                    self._series.clear()
                self._series[key] = series
        return series

    def watch_service(
        self, queue_depths: Callable[[], dict[str, int]], models: Callable[[], list[tuple[str, str]]]
    ) -> None:
        """Expose, read at scrape time, each served model's queue depth
        (``edgefleet_agent_queue_depth{model="name:version"}``) and which models serve
        (``edgefleet_agent_model_info{model, version} 1``)."""
        self.registry.register(_ServiceCollector(queue_depths, models))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    def __init__(
        self, queue_depths: Callable[[], dict[str, int]], models: Callable[[], list[tuple[str, str]]]
    ) -> None:
        self._depths, self._models = queue_depths, models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "edgefleet_agent_queue_depth", "Requests waiting in a model's queue.", labels=["model"]
        )
        info = GaugeMetricFamily(
            "edgefleet_agent_model_info", "1 for each model the agent serves.", labels=["model", "version"]
        )
        for ref, n in sorted(self._depths().items()):
            depth.add_metric([ref], n)
        for name, version in sorted(self._models()):
            info.add_metric([name, version], 1)
        yield depth
        yield info
