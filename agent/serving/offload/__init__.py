"""Offload to the cloud endpoint when serving locally would miss the latency budget.

- :mod:`.policy`: where a request runs (local, cloud, or shed), pure.
- :mod:`.breaker`: the circuit breaker that guards the endpoint, pure over an explicit clock.
- :mod:`.cloud`: the I/O shell: an Open Inference Protocol client and the :class:`Offloader`
  the inference service consults.
"""

from agent.serving.offload.breaker import BreakerState, CircuitBreaker
from agent.serving.offload.cloud import CloudClient, CloudError, Offloader
from agent.serving.offload.policy import OffloadSettings, Route, route

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CloudClient",
    "CloudError",
    "OffloadSettings",
    "Offloader",
    "Route",
    "route",
]
