"""How many samples go into one run of a model, and cutting sample arrays into such runs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from agent.contracts.manifest import TensorSpec

DEFAULT_BATCH = 32


def run_batch(inputs: tuple[TensorSpec, ...], preferred: int = DEFAULT_BATCH) -> int:
    """Rows per run: ``preferred`` when every input's batch dim is dynamic, else the fixed batch
    size the model was exported with (the same for all inputs, or the smallest of them)."""
    fixed = [s.shape[0] for s in inputs if s.shape and s.shape[0] > 0]
    return min(fixed) if fixed else preferred


def iter_batches(samples: dict[str, np.ndarray], batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive slices of ``batch`` rows; the last may be shorter (trim the rows first with
    :func:`usable_rows` for a model with a fixed batch size)."""
    n = len(next(iter(samples.values())))
    for start in range(0, n, batch):
        yield {k: v[start : start + batch] for k, v in samples.items()}


def usable_rows(n: int, inputs: tuple[TensorSpec, ...]) -> int:
    """How many of ``n`` rows a fixed-batch model can take (a multiple of its batch size)."""
    fixed = [s.shape[0] for s in inputs if s.shape and s.shape[0] > 0]
    if not fixed:
        return n
    b = min(fixed)
    return n - n % b
