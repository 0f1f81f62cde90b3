"""Prometheus metrics of the inference server, in a registry of its own (one per server, so
several agents in one process — as in tests — don't collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Edge models answer in milliseconds; the buckets resolve 0.5 ms to 2.5 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
