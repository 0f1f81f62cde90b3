"""Runtime adapters by name: built-ins and plug-ins both come from the ``edgefleet.runtimes``
entry-point group; unknown names are refused with the list of known ones."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from agent.contracts.manifest import Manifest
from agent.runtimes.base import RuntimeAdapter, RuntimeUnavailable

GROUP = "edgefleet.runtimes"
# Used when the package is run from a source tree that was never installed (no entry points).
_BUILTIN = {
    "onnxruntime": "agent.runtimes.onnxrt:OnnxRuntimeAdapter",
    "litert": "agent.runtimes.litert:LiteRTAdapter",
    "tensorrt": "agent.runtimes.tensorrt:TensorRTAdapter",
}


@cache
def _specs() -> dict[str, str]:
    specs = dict(_BUILTIN)
    for ep in entry_points(group=GROUP):
        if ep.name in specs and specs[ep.name] != ep.value:
            raise RuntimeError(f"runtime {ep.name!r} is registered twice ({specs[ep.name]} and {ep.value})")
        specs[ep.name] = ep.value
    return specs


def known_runtimes() -> list[str]:
    return sorted(_specs())


def get_runtime(name: str) -> type[RuntimeAdapter]:
    """The adapter class for ``name``. Raises ``KeyError`` naming the known runtimes."""
    spec = _specs().get(name)
    if spec is None:
        raise KeyError(f"unknown runtime {name!r} (known: {', '.join(known_runtimes())})")
    module, _, attr = spec.partition(":")
    cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, RuntimeAdapter)):
        raise TypeError(f"{spec} is not a RuntimeAdapter")
    return cls


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
