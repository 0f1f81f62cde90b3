"""Run a ``tflite-arm`` bundle's ``.tflite`` file with LiteRT (``ai-edge-litert``), or with
``tflite-runtime`` on old boards where LiteRT has no wheel.

The bundle's model takes the layout and integer types onnx2tf gave it (NHWC, int8); clients send
and receive the source model's (NCHW, float32). Each tensor's manifest entry says how to map
between them, and :mod:`agent.runtimes.tensors` does it. A tensor is found in the model by its
``model_name`` (the TFLite tensor name), else by its position.

The model file has a batch size of its own (usually 1, or dynamic). A batch of another size makes
the adapter resize the input tensors and re-allocate; when the model refuses to be resized, the
batch is run in chunks of the model's own batch size instead.
"""

from __future__ import annotations

import threading
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.contracts.manifest import Manifest, TensorSpec
from agent.runtimes.base import RuntimeAdapter, RuntimeLoadError, RuntimeUnavailable
from agent.runtimes.samples import first_rows, join_runs
from agent.runtimes.tensors import from_model, to_model

# (module with an Interpreter class, distribution that provides it), in order of preference.
_BACKENDS = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)


def _backend() -> tuple[Any, str] | None:
    """The first importable ``Interpreter`` class and its distribution's name, else ``None``."""
    for module, dist in _BACKENDS:
        try:
            return import_module(module).Interpreter, dist
        except ImportError:
            continue
    return None


def interpreter_class() -> Any:
    """The ``Interpreter`` class of the first installed backend (LiteRT, else tflite-runtime),
    or ``None`` when neither is installed."""
    found = _backend()
    return None if found is None else found[0]


class LiteRTAdapter(RuntimeAdapter):
    """A ``.tflite`` model loaded in a LiteRT interpreter. ``infer`` is serialised by a lock,
    since one interpreter can't run two batches at once."""

    name: ClassVar[str] = "litert"

    def __init__(
        self,
        bundle_dir: Path,
        manifest: Manifest,
        interpreter: Any,
        inputs: list[tuple[TensorSpec, dict[str, Any]]],
        outputs: list[tuple[TensorSpec, dict[str, Any]]],
    ) -> None:
        super().__init__(bundle_dir, manifest)
        self._interp = interpreter
        self._inputs = inputs
        self._outputs = outputs
        self._lock = threading.Lock()
        # The shape each input tensor is allocated with right now.
        self._shapes = {d["index"]: tuple(int(x) for x in d["shape"]) for _, d in inputs}
        self._resizable = True

    # -- what is installed -----------------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if _backend() is None:
            return (
                "neither ai-edge-litert nor tflite-runtime is installed: "
                "install edgefleet[tflite] (ai-edge-litert)"
            )
        return None

    @classmethod
    def version(cls) -> str | None:
        found = _backend()
        if found is None:
            return None
        try:
            return version(found[1])
        except PackageNotFoundError:
            return None

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> LiteRTAdapter:
        """Load ``manifest.entrypoint`` and bind each manifest tensor to a model tensor.

        Raises :class:`RuntimeUnavailable` without LiteRT, :class:`RuntimeLoadError` when the file
        is missing or not a model LiteRT can run, or its tensors don't match the manifest's.
        """
        found = _backend()
        if found is None:
            raise RuntimeUnavailable(cls.unavailable_reason() or "LiteRT is not installed")
        interpreter_cls, _ = found
        path = bundle_dir / manifest.entrypoint
        if not path.is_file():
            raise RuntimeLoadError(f"{path}: no such model file")
        try:
            interp = interpreter_cls(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeLoadError(f"{path}: LiteRT can't load it: {_first_line(exc)}") from exc
        inputs = _bind("input", manifest.inputs, interp.get_input_details())
        outputs = _bind("output", manifest.outputs, interp.get_output_details())
        return cls(bundle_dir, manifest, interp, inputs, outputs)

    def close(self) -> None:
        self._interp = None

    # -- running ---------------------------------------------------------------------------------

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch given in the source form; returns outputs in the source form.

        Raises ``ValueError`` for a missing input, a wrong shape or dtype, or inputs whose
        batch sizes differ; :class:`RuntimeLoadError` after :meth:`close`.
        """
        if self._interp is None:
            raise RuntimeLoadError("the model was closed")
        missing = [spec.name for spec, _ in self._inputs if spec.name not in inputs]
        if missing:
            raise ValueError(f"missing input(s): {', '.join(missing)}")
        feeds = [(d, _as_dtype(to_model(spec, inputs[spec.name]), d)) for spec, d in self._inputs]
        with self._lock:
            raw = self._run(feeds)
        return {spec.name: from_model(spec, raw[d["index"]]) for spec, d in self._outputs}

    def _run(self, feeds: list[tuple[dict[str, Any], np.ndarray]]) -> dict[int, np.ndarray]:
        wanted = {d["index"]: tuple(arr.shape) for d, arr in feeds}
        if wanted != self._shapes and self._resizable:
            try:
                self._resize(wanted)
                return self._invoke(feeds)
            except (ValueError, RuntimeError):
                # A model with its batch size baked in (e.g. a Reshape to [1, ...], or a
                # TRANSPOSE_CONV's output shape, which fails only when invoked) can't be resized:
                # go back to its own shapes and run the batch in chunks from now on.
                self._resizable = False
                self._resize(self._fixed_shapes())
        if wanted == self._shapes:
            return self._invoke(feeds)
        return self._run_in_chunks(feeds)

    def _resize(self, shapes: dict[int, tuple[int, ...]]) -> None:
        for index, shape in shapes.items():
            self._interp.resize_tensor_input(index, list(shape), strict=False)
        self._interp.allocate_tensors()
        self._shapes = dict(shapes)

    def _fixed_shapes(self) -> dict[int, tuple[int, ...]]:
        """Each input's shape as the file declares it (dynamic dims as the file's default)."""
        return {d["index"]: tuple(int(x) for x in d["shape"]) for _, d in self._inputs}

    def _invoke(self, feeds: list[tuple[dict[str, Any], np.ndarray]]) -> dict[int, np.ndarray]:
        for d, arr in feeds:
            self._interp.set_tensor(d["index"], arr)
        self._interp.invoke()
        # get_tensor copies, so the results survive the next invoke.
        return {d["index"]: self._interp.get_tensor(d["index"]) for _, d in self._outputs}

    def _run_in_chunks(self, feeds: list[tuple[dict[str, Any], np.ndarray]]) -> dict[int, np.ndarray]:
        batches = {arr.shape[0] if arr.ndim else 1 for _, arr in feeds}
        chunk = {s[0] if s else 1 for s in self._shapes.values()}
        if len(batches) != 1 or len(chunk) != 1:
            raise ValueError(f"inputs must share one batch size, got {sorted(batches)}")
        (n,), (step,) = batches, chunk
        for d, arr in feeds:
            if tuple(arr.shape[1:]) != self._shapes[d["index"]][1:]:
                raise ValueError(
                    f"input {d['name']!r}: shape {list(arr.shape)} does not fit the model's "
                    f"{list(self._shapes[d['index']])}"
                )
        parts: dict[int, list[np.ndarray]] = {d["index"]: [] for _, d in self._outputs}
        for start in range(0, n, step):
            piece = []
            for d, arr in feeds:
                part = arr[start : start + step]
                if part.shape[0] < step:  # pad the last chunk; its extra rows are dropped below
                    pad = np.zeros((step - part.shape[0], *part.shape[1:]), dtype=part.dtype)
                    part = np.concatenate([part, pad])
                piece.append((d, part))
            got = self._invoke(piece)
            for index, value in got.items():
                parts[index].append(first_rows(value, step, min(step, n - start)))
        counts = [min(step, n - start) for start in range(0, n, step)]
        # Joined along each output's sample axis (a recurrent state's is not the first).
        return {index: join_runs(values, counts)[0] for index, values in parts.items()}


def _as_dtype(arr: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """``arr`` in the model tensor's dtype: TFLite often takes int32 where ONNX had int64."""
    want = np.dtype(detail["dtype"])
    return arr if arr.dtype == want else arr.astype(want)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _bind(
    side: str, specs: tuple[TensorSpec, ...], details: list[dict[str, Any]]
) -> list[tuple[TensorSpec, dict[str, Any]]]:
    """Pair each manifest tensor with the model tensor of its ``model_name``, or failing that the
    one at its position. Raises :class:`RuntimeLoadError` when the counts or a rank differ."""
    if len(specs) != len(details):
        raise RuntimeLoadError(f"the manifest lists {len(specs)} {side}(s), the model has {len(details)}")
    by_name = {d["name"]: d for d in details}
    pairs = []
    for i, spec in enumerate(specs):
        d = by_name.get(spec.model_name or "", details[i])
        want = spec.model_shape if spec.model_shape is not None else spec.shape
        if len(want) != len(d["shape"]):
            raise RuntimeLoadError(
                f"{side} {spec.name!r}: the manifest says rank {len(want)}, the model's tensor "
                f"{d['name']!r} has shape {list(d['shape'])}"
            )
        pairs.append((spec, d))
    if len({d["index"] for _, d in pairs}) != len(pairs):
        raise RuntimeLoadError(f"two manifest {side}s map to the same model tensor")
    return pairs
