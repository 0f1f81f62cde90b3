"""The device's inference API (Open Inference Protocol v2 over HTTP).

- :class:`ModelRegistry` / :class:`LoadedModel`: what is served, swapped atomically.
- :func:`create_app`: the FastAPI app; :class:`InferenceServer`: uvicorn in a thread.
- :class:`Metrics`: inference latency and request counts for ``/metrics``.
"""

from agent.serving.app import create_app
from agent.serving.metrics import Metrics
from agent.serving.models import LoadedModel, ModelRegistry
from agent.serving.server import InferenceServer

__all__ = ["InferenceServer", "LoadedModel", "Metrics", "ModelRegistry", "create_app"]
