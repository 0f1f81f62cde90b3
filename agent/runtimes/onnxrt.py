"""ONNX Runtime adapter: runs ``onnx-x86`` bundles (and is the compiler's validation runner).

Providers are picked from what this ONNX Runtime build offers: CUDA first, then OpenVINO, then
the CPU provider, which every build has and which takes any node the others leave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.contracts.manifest import Manifest, TensorSpec
from agent.runtimes.base import RuntimeAdapter, RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.tensors import from_model, to_model

try:  # the agent extra installs it; a device without it reports instead of crashing
    import onnxruntime as ort
except ImportError:  # pragma: no cover - exercised only on a broken install
    ort = None

_PREFERRED = ("CUDAExecutionProvider", "OpenVINOExecutionProvider")


def providers() -> list[str]:
    """Execution providers to ask for, best first; always ends with the CPU provider."""
    if ort is None:
        return []
    available = set(ort.get_available_providers())
    chosen = [p for p in _PREFERRED if p in available]
    if (
        ort.get_device() == "GPU"
        and "CUDAExecutionProvider" not in chosen
        and "CUDAExecutionProvider" in available
    ):
        chosen.insert(0, "CUDAExecutionProvider")
    return [*chosen, "CPUExecutionProvider"]


def session_options(
    threads: int | None, optimization: str | None = None, spinning: bool | None = None
) -> Any:
    """``SessionOptions`` with ``threads`` intra-op threads (``None``: ONNX Runtime's default), a
    graph optimisation level by name (``None``: ORT_ENABLE_ALL) and, when ``spinning`` is given,
    whether intra-op threads go on spinning once a run has returned (ONNX Runtime's default) or
    stop at once (``session.force_spinning_stop``). During a run they spin either way: parked
    between operators, every parallel section would first have to wake them. On a 2-core x86 the
    agent served the MobileNetV2-shaped model at 154-162 requests a second at concurrency 16 with
    its threads parked, 180-191 with them spinning only during runs (ONNX Runtime's default:
    182-183); at 18 requests a second that took 0.33 cores against 1.05 (BENCHMARKS.md).

    ONNX Runtime's own log is kept to errors: a model whose declared output shape differs from
    what it computes (common in exported models) would otherwise print a warning on every run,
    a line per request on a device and hundreds per compile."""
    assert ort is not None
    so = ort.SessionOptions()
    so.log_severity_level = 3  # ERROR
    if threads:
        so.intra_op_num_threads = threads
    if spinning is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.add_session_config_entry("session.force_spinning_stop", "0" if spinning else "1")
    if optimization:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    return so


class OnnxRuntimeAdapter(RuntimeAdapter):
    name: ClassVar[str] = "onnxruntime"

    def __init__(self, bundle_dir: Path, manifest: Manifest, session: Any) -> None:
        super().__init__(bundle_dir, manifest)
        self._session = session
        self._inputs = {s.name: s for s in manifest.inputs}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if ort is not None else "onnxruntime is not installed (pip install edgefleet[agent])"

    @classmethod
    def version(cls) -> str | None:
        return None if ort is None else str(ort.__version__)

    @classmethod
    def load(
        cls,
        bundle_dir: Path,
        manifest: Manifest,
        threads: int | None = None,
        spinning: bool | None = None,
        optimization: str | None = None,
    ) -> OnnxRuntimeAdapter:
        """Open ``manifest.entrypoint`` in an ``InferenceSession``.

        ``optimization`` names a ``GraphOptimizationLevel`` (the compiler's stand-in check uses
        ``ORT_ENABLE_BASIC``). Raises :class:`RuntimeUnavailable` without onnxruntime, and
        :class:`RuntimeLoadError` when the file is missing or ONNX Runtime refuses it or its
        inputs/outputs are not the ones the manifest names.
        """
        reason = cls.unavailable_reason()
        if reason:
            raise RuntimeUnavailable(reason)
        path = bundle_dir / manifest.entrypoint
        if not path.is_file():
            raise RuntimeLoadError(f"{manifest.entrypoint}: no such file in the bundle")
        try:
            session = ort.InferenceSession(
                str(path), session_options(threads, optimization, spinning), providers=providers()
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types, all one seam
            raise RuntimeLoadError(
                f"{manifest.entrypoint}: ONNX Runtime refused it: {' '.join(str(exc).split())}"
            ) from exc
        _check_names(
            manifest, {i.name for i in session.get_inputs()}, {o.name for o in session.get_outputs()}
        )
        return cls(bundle_dir, manifest, session)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; tensors in and out as the manifest describes them.

        Raises ``ValueError`` naming the tensor for a missing or unknown input or a bad shape/dtype.
        """
        unknown = set(inputs) - set(self._inputs)
        if unknown:
            raise ValueError(
                f"unknown input {sorted(unknown)[0]!r} (model inputs: {', '.join(self._inputs)})"
            )
        feed = {}
        for name, spec in self._inputs.items():
            if name not in inputs:
                raise ValueError(f"input {name!r} is missing")
            feed[_model_name(spec)] = to_model(spec, inputs[name])
        names = [_model_name(s) for s in self.manifest.outputs]
        try:
            values = self._session.run(names, feed)
        except Exception as exc:  # shape errors deep in the graph surface here
            raise ValueError(f"inference failed: {' '.join(str(exc).split())}") from exc
        return {s.name: from_model(s, v) for s, v in zip(self.manifest.outputs, values, strict=True)}

    def close(self) -> None:
        self._session = None


def _model_name(spec: TensorSpec) -> str:
    return spec.model_name or spec.name


def _check_names(manifest: Manifest, inputs: set[str], outputs: set[str]) -> None:
    for kind, specs, have in (("input", manifest.inputs, inputs), ("output", manifest.outputs, outputs)):
        for spec in specs:
            if _model_name(spec) not in have:
                name = _model_name(spec)
                raise RuntimeLoadError(
                    f"{manifest.entrypoint}: the model has no {kind} {name!r} (manifest names it)"
                )
