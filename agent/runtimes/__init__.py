"""Runtime adapters: load a bundle's model and run it with tensors in the source model's layout.

Adapters register by name (``onnxruntime``, ``litert``, ``tensorrt``) through the
``edgefleet.runtimes`` entry-point group, the same way a third-party adapter would; the bundle's
manifest names the runtime to use.
"""

from agent.runtimes.base import RuntimeAdapter, RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.registry import available_runtimes, get_runtime, known_runtimes, load_bundle

__all__ = [
    "RuntimeAdapter",
    "RuntimeLoadError",
    "RuntimeUnavailable",
    "available_runtimes",
    "get_runtime",
    "known_runtimes",
    "load_bundle",
]
