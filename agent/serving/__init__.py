"""The device's inference API (Open Inference Protocol v2 over HTTP and gRPC).

- :class:`ModelRegistry` / :class:`LoadedModel`: what is served, swapped atomically.
- :class:`InferenceService`: the transport-neutral service (lookup, checks, batching, offload).
- :func:`create_app`: the HTTP front-end (FastAPI); :class:`InferenceServer`: uvicorn in a thread.
- :class:`Metrics`: inference latency and request counts for ``/metrics``.
"""

from agent.serving.app import create_app
from agent.serving.metrics import Metrics
from agent.serving.models import LoadedModel, ModelRegistry
from agent.serving.scheduler import SchedulerSettings
from agent.serving.server import InferenceServer
from agent.serving.service import InferenceService, InferResult

__all__ = [
    "InferResult",
    "InferenceServer",
    "InferenceService",
    "LoadedModel",
    "Metrics",
    "ModelRegistry",
    "SchedulerSettings",
    "create_app",
]
