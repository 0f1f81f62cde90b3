"""How many samples go into one run of a model, and cutting sample arrays into such runs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from agent.contracts.manifest import TensorSpec
from agent.runtimes import per_run

DEFAULT_BATCH = 32


def per_run_inputs(samples: dict[str, np.ndarray] | None, inputs: tuple[TensorSpec, ...]) -> set[str]:
    """The names of the ``inputs`` whose ``samples`` come :func:`per_run`."""
    return {s.name for s in inputs if samples and s.name in samples and per_run(s, samples[s.name])}


def whole_runs(samples: dict[str, np.ndarray] | None, inputs: tuple[TensorSpec, ...]) -> bool:
    """Whether any input's ``samples`` come :func:`per_run`."""
    return bool(per_run_inputs(samples, inputs))


def run_batch(
    inputs: tuple[TensorSpec, ...],
    preferred: int = DEFAULT_BATCH,
    samples: dict[str, np.ndarray] | None = None,
) -> int:
    """Rows per run: 1 when ``samples`` come in whole runs (:func:`whole_runs`), ``preferred``
    when every input's batch dim is dynamic, else the fixed batch size the model was exported with
    (the same for all inputs, or the smallest of them)."""
    if whole_runs(samples, inputs):
        return 1
    fixed = [s.shape[0] for s in inputs if s.shape and s.shape[0] > 0]
    return min(fixed) if fixed else preferred


def iter_batches(
    samples: dict[str, np.ndarray], batch: int, inputs: tuple[TensorSpec, ...] = ()
) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive slices of ``batch`` rows; the last may be shorter (trim the rows first with
    :func:`usable_rows` for a model with a fixed batch size). An input of ``inputs`` whose
    samples come :func:`per_run` gives its run's whole tensor (``batch`` is then 1)."""
    n = len(next(iter(samples.values())))
    whole = per_run_inputs(samples, inputs)
    for start in range(0, n, batch):
        yield {
            k: np.asarray(v[start]) if k in whole else v[start : start + batch] for k, v in samples.items()
        }


def usable_rows(n: int, inputs: tuple[TensorSpec, ...], samples: dict[str, np.ndarray] | None = None) -> int:
    """How many of ``n`` rows a fixed-batch model can take (a multiple of its batch size; all of
    them when the samples come in whole runs)."""
    if whole_runs(samples, inputs):
        return n
    fixed = [s.shape[0] for s in inputs if s.shape and s.shape[0] > 0]
    if not fixed:
        return n
    b = min(fixed)
    return n - n % b
