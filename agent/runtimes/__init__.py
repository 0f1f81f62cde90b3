"""Runtime adapters: load a bundle's model and run it with tensors in the source model's layout.

Adapters register by name (``onnxruntime``, ``litert``, ``tensorrt``) through the
``edgefleet.runtimes`` entry-point group, the same way a third-party adapter would; the bundle's
manifest names the runtime to use. Importing this package loads no runtime library (nor numpy);
an adapter's module is imported when its runtime is first asked for.

The names below are the public face: the compilers validate bundles with the device's own
adapters through them only (a test holds them to it), never through an adapter's module.
"""

from agent.contracts.plugins import PluginError
from agent.runtimes.base import RuntimeAdapter, RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.bundle_dir import read_manifest, sha256_file, verify_bundle_dir
from agent.runtimes.registry import (
    available_runtimes,
    get_runtime,
    known_runtimes,
    litert_interpreter_class,
    load_bundle,
    load_onnx,
    runtime_version,
    unavailable_reason,
)
from agent.runtimes.samples import per_run, samples_first

__all__ = [
    "PluginError",
    "RuntimeAdapter",
    "RuntimeLoadError",
    "RuntimeUnavailable",
    "available_runtimes",
    "get_runtime",
    "known_runtimes",
    "litert_interpreter_class",
    "load_bundle",
    "load_onnx",
    "per_run",
    "read_manifest",
    "runtime_version",
    "samples_first",
    "sha256_file",
    "unavailable_reason",
    "verify_bundle_dir",
]
