"""Sample data for calibration and validation: read it, match it to the model's inputs, check it.

Accepted forms:

* ``.npz`` with one array per input, keyed by input name (a one-input model also takes a single
  array under any key, or ``x``); a validation file may add labels under ``y``;
* ``.npy`` with one array, for a one-input model;
* a folder of images with a ``preprocess.yaml`` (:mod:`compilers.image_folder`), one-input only.

Axis 0 of every array is the sample axis; the remaining axes must equal the input's (dynamic dims
take any size) and the dtype must be the input's exactly: a silent cast would calibrate on data
the device never sees.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.contracts.manifest import TensorSpec
from agent.runtimes import per_run
from compilers.errors import CalibrationError
from compilers.image_folder import load_image_folder

Samples = dict[str, np.ndarray]
LABEL_KEY = "y"
SINGLE_KEY = "x"


@dataclass(frozen=True)
class SampleSet:
    """Inputs keyed by name (all with the same number of rows) and optional labels."""

    inputs: Samples
    labels: np.ndarray | None = None
    origin: str = ""

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def rows(self, start: int, stop: int | None = None) -> Samples:
        return {k: v[start:stop] for k, v in self.inputs.items()}


def expected_shape(spec: TensorSpec) -> str:
    """The shape a sample array for ``spec`` must have, e.g. ``[N, 1, 8, 8]``."""
    dims = ["N"] + ["?" if d < 0 else str(d) for d in spec.shape[1:]]
    return "[" + ", ".join(dims) + "]"


def _dims(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def _read_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if path.suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CalibrationError(f"{what} {path}: cannot read: {' '.join(str(exc).split())}") from exc
    raise CalibrationError(
        f"{what} {path}: expected a .npz or .npy file, or a folder of images with a preprocess.yaml"
    )


def _match_inputs(
    arrays: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...], path: Path, what: str
) -> Samples:
    names = [s.name for s in inputs]
    data = {k: v for k, v in arrays.items() if k != LABEL_KEY}
    if all(n in data for n in names):
        return {n: data[n] for n in names}
    if len(inputs) == 1 and len(data) == 1:
        return {names[0]: next(iter(data.values()))}
    if len(inputs) == 1 and SINGLE_KEY in data:
        return {names[0]: data[SINGLE_KEY]}
    missing = [n for n in names if n not in data]
    raise CalibrationError(
        f"{what} {path}: no array for input {missing[0]!r} (arrays: {', '.join(sorted(arrays)) or 'none'}; "
        f"key them by input name: {', '.join(names)})"
    )


def check_samples(samples: Samples, inputs: tuple[TensorSpec, ...], source: str) -> Samples:
    """Check every input's array against its spec (rank, fixed dims after the sample axis, dtype)
    and that all inputs have the same number of samples; return the samples, a scalar input's one
    value (a 0-d array) repeated for every run.

    An array with one axis more than its input holds one whole input tensor per run
    (:func:`agent.runtimes.per_run`): how an input whose batch is not its first axis comes (a
    recurrent state ``[layers, N, hidden]``), and a scalar input's values. Every fixed dim must
    then be the model's.

    Raises :class:`CalibrationError` naming the input, the expected and the got shape or dtype.
    """
    counts: dict[str, int] = {}
    for spec in inputs:
        arr = samples[spec.name]
        whole = per_run(spec, arr)
        if not spec.shape and arr.ndim > 1:
            raise CalibrationError(
                f"{source}: input {spec.name!r} is a scalar: give one value (a 0-d array) or one per "
                f"run, got shape {list(arr.shape)}"
            )
        if whole:
            if any(w >= 0 and w != g for w, g in zip(spec.shape, arr.shape[1:], strict=True)):
                raise CalibrationError(
                    f"{source}: input {spec.name!r} is {_dims(spec.shape)}; got {list(arr.shape)} "
                    f"(one sample per row: {expected_shape(spec)}; or one whole tensor per run: "
                    f"[runs, {_dims(spec.shape)[1:]})"
                )
        elif spec.shape and (
            arr.ndim != len(spec.shape)
            or any(w >= 0 and w != g for w, g in zip(spec.shape[1:], arr.shape[1:], strict=True))
        ):
            raise CalibrationError(
                f"{source}: input {spec.name!r} expects shape {expected_shape(spec)}, got {list(arr.shape)}"
            )
        if arr.dtype != np.dtype(spec.dtype):
            raise CalibrationError(
                f"{source}: input {spec.name!r} expects dtype {spec.dtype}, got {arr.dtype} "
                f"(save the samples as {spec.dtype})"
            )
        if arr.ndim == 0:
            continue  # a scalar input's one value for every run
        if len(arr) == 0:
            raise CalibrationError(f"{source}: input {spec.name!r} has no samples")
        counts[spec.name] = len(arr)
    if len(set(counts.values())) > 1:
        each = ", ".join(f"{n!r} {c}" for n, c in counts.items())
        inner = [s for s in inputs if s.shape and s.shape[0] >= 0 and any(d < 0 for d in s.shape[1:])]
        why = (
            f"; input {inner[0].name!r} {_dims(inner[0].shape)} has its batch on a later axis (a "
            "recurrent state's [layers, N, hidden]): give it one whole tensor per run, "
            f"[runs, {', '.join(str(d if d >= 0 else 1) for d in inner[0].shape)}], and the other "
            "inputs one sample per row"
            if inner
            else "; every input's first axis counts its samples"
        )
        raise CalibrationError(f"{source}: inputs have different numbers of samples ({each}){why}")
    if not counts:
        raise CalibrationError(f"{source}: every input is a single scalar value; give one value per run")
    n = next(iter(counts.values()))
    return {k: np.full(n, v, dtype=v.dtype) if v.ndim == 0 else v for k, v in samples.items()}


def load_samples(path: Path, inputs: tuple[TensorSpec, ...], what: str = "calibration data") -> SampleSet:
    """Read ``path`` (.npz, .npy or an image folder) as samples for ``inputs``.

    Raises :class:`CalibrationError` when the data is unreadable or does not match the inputs.
    """
    source = f"{what} {path}"
    if path.is_dir():
        if len(inputs) != 1:
            raise CalibrationError(f"{source}: a folder of images can feed only a one-input model")
        arrays = {inputs[0].name: load_image_folder(path)}
    elif path.is_file():
        arrays = _read_arrays(path, what)
    else:
        raise CalibrationError(f"{source}: no such file or folder")
    samples = check_samples(_match_inputs(arrays, inputs, path, what), inputs, source)
    labels = arrays.get(LABEL_KEY)
    if labels is not None and labels.shape[:1] != (len(next(iter(samples.values()))),):
        raise CalibrationError(
            f"{source}: labels {LABEL_KEY!r} have shape {list(labels.shape)}, not one per sample"
        )
    return SampleSet(inputs=samples, labels=labels, origin=str(path))


def split_holdout(samples: SampleSet, fraction: float = 0.2) -> tuple[SampleSet, SampleSet]:
    """Split into (calibration, held-out): the last ``fraction`` of rows (at least one) is held
    out, so validation never sees a sample that set the quantization ranges."""
    n = len(samples)
    held = max(1, round(n * fraction))
    cut = n - held

    def part(lo: int, hi: int) -> SampleSet:
        labels = None if samples.labels is None else samples.labels[lo:hi]
        return SampleSet(inputs=samples.rows(lo, hi), labels=labels, origin=samples.origin)

    return part(0, cut), part(cut, n)


def random_samples(inputs: tuple[TensorSpec, ...], count: int, seed: int = 0) -> SampleSet:
    """``count`` random samples per input (dynamic dims set to 1): standard normal for floats,
    small non-negative integers for integer inputs, coin flips for booleans."""
    rng = np.random.default_rng(seed)
    out: Samples = {}
    for spec in inputs:
        shape = (count, *(1 if d < 0 else d for d in spec.shape[1:]))
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            out[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            out[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            out[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return SampleSet(inputs=out, origin="random")
