"""Device telemetry: what the inference service measured, published in windows over MQTT.

- :class:`TelemetryRecorder`: fed by the inference service, one short-lock update per request.
- :class:`LatencyHistogram`: fixed log-spaced buckets for the window's percentiles.
- :class:`ProcessSampler`: the agent process's CPU, resident memory and the temperature.
- :class:`TelemetryBuffer`: the bounded on-disk buffer used while the broker is away.
- :class:`TelemetryPublisher`: the thread that closes a window every interval and sends it.

The message itself is :class:`agent.contracts.telemetry.Telemetry`.
"""

from agent.telemetry.buffer import TelemetryBuffer
from agent.telemetry.histogram import LatencyHistogram
from agent.telemetry.process import ProcessSampler
from agent.telemetry.publisher import TelemetryPublisher
from agent.telemetry.recorder import ModelWindow, TelemetryRecorder

__all__ = [
    "LatencyHistogram",
    "ModelWindow",
    "ProcessSampler",
    "TelemetryBuffer",
    "TelemetryPublisher",
    "TelemetryRecorder",
]
