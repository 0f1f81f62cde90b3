"""Runtime adapters by name: built-ins and plug-ins both come from the ``edgefleet.runtimes``
entry-point group (:data:`agent.contracts.names.RUNTIMES`); unknown names are refused with the
list of known ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.contracts.manifest import Manifest
from agent.contracts.names import RUNTIMES
from agent.runtimes.base import RuntimeAdapter, RuntimeUnavailable
from agent.runtimes.echo import EchoOutputs, split_echoes


def known_runtimes() -> list[str]:
    return RUNTIMES.names()


def get_runtime(name: str) -> type[RuntimeAdapter]:
    """The adapter class for ``name``. Raises :class:`~agent.contracts.plugins.PluginError` (a
    ``LookupError``) naming the known runtimes."""
    return RUNTIMES.load(name, RuntimeAdapter)


def available_runtimes() -> dict[str, str | None]:
    """Every known runtime with its installed version, ``None`` where it can't run here."""
    out: dict[str, str | None] = {}
    for name in known_runtimes():
        cls = get_runtime(name)
        out[name] = None if cls.unavailable_reason() else cls.version()
    return out


def load_bundle(
    bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
) -> RuntimeAdapter:
    """Load a verified bundle with the runtime its manifest names.

    Raises :class:`RuntimeUnavailable` (runtime missing here) or
    :class:`~agent.runtimes.base.RuntimeLoadError` (model refused).
    """
    cls = get_runtime(manifest.runtime)
    reason = cls.unavailable_reason()
    if reason:
        raise RuntimeUnavailable(reason)
    return _with_echoes(manifest, lambda m: cls.load(bundle_dir, m, threads=threads, spinning=spinning))


def load_onnx(
    bundle_dir: Path, manifest: Manifest, threads: int | None = None, optimization: str | None = None
) -> RuntimeAdapter:
    """Load ``manifest.entrypoint`` (an ONNX file) under ONNX Runtime, whatever the manifest's
    runtime: the compilers validate FP32 sources and stand-ins this way. ``optimization`` names a
    ``GraphOptimizationLevel``. Raises like :func:`load_bundle`."""
    from agent.runtimes.onnxrt import OnnxRuntimeAdapter  # imports onnxruntime

    return _with_echoes(
        manifest, lambda m: OnnxRuntimeAdapter.load(bundle_dir, m, threads=threads, optimization=optimization)
    )


def _with_echoes(manifest: Manifest, load: Callable[[Manifest], RuntimeAdapter]) -> RuntimeAdapter:
    """``load`` of the manifest without its echo outputs, wrapped to give those back."""
    inner, echoes = split_echoes(manifest)
    adapter = load(inner)
    return adapter if not echoes else EchoOutputs(adapter, manifest)


def litert_interpreter_class() -> Any:
    """The ``Interpreter`` class of the first installed LiteRT backend (``ai-edge-litert``, else
    ``tflite-runtime``), ``None`` when neither is installed."""
    from agent.runtimes.litert import interpreter_class

    return interpreter_class()


def unavailable_reason(name: str) -> str | None:
    """``None`` when runtime ``name`` can run on this host, else one line saying why not.
    Raises :class:`~agent.contracts.plugins.PluginError` for an unknown name."""
    return get_runtime(name).unavailable_reason()


def runtime_version(name: str) -> str | None:
    """The installed version of runtime ``name``'s library, ``None`` when it is not installed."""
    return get_runtime(name).version()
