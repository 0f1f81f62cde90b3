"""Runtime adapters by name: built-ins and plug-ins both come from the ``edgefleet.runtimes``
entry-point group; unknown names are refused with the list of known ones."""

from __future__ import annotations

from pathlib import Path

from agent.contracts.manifest import Manifest
from agent.plugins import Registry
from agent.runtimes.base import RuntimeAdapter, RuntimeUnavailable

GROUP = "edgefleet.runtimes"
_REGISTRY = Registry(
    GROUP,
    {
        "onnxruntime": "agent.runtimes.onnxrt:OnnxRuntimeAdapter",
        "litert": "agent.runtimes.litert:LiteRTAdapter",
        "tensorrt": "agent.runtimes.tensorrt:TensorRTAdapter",
    },
    what="runtime",
)


def known_runtimes() -> list[str]:
    return _REGISTRY.names()


def get_runtime(name: str) -> type[RuntimeAdapter]:
    """The adapter class for ``name``. Raises :class:`~agent.plugins.PluginError` (a
    ``LookupError``) naming the known runtimes."""
    return _REGISTRY.load(name, RuntimeAdapter)


def available_runtimes() -> dict[str, str | None]:
    """Every known runtime with its installed version, ``None`` where it can't run here."""
    out: dict[str, str | None] = {}
    for name in known_runtimes():
        cls = get_runtime(name)
        out[name] = None if cls.unavailable_reason() else cls.version()
    return out


def load_bundle(bundle_dir: Path, manifest: Manifest, threads: int | None = None) -> RuntimeAdapter:
    """Load a verified bundle with the runtime its manifest names.

    Raises :class:`RuntimeUnavailable` (runtime missing here) or
    :class:`~agent.runtimes.base.RuntimeLoadError` (model refused).
    """
    cls = get_runtime(manifest.runtime)
    reason = cls.unavailable_reason()
    if reason:
        raise RuntimeUnavailable(reason)
    return cls.load(bundle_dir, manifest, threads=threads)
