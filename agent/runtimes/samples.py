"""Which axis of a model's output holds its samples.

Axis 0 for almost every output. Not for a recurrent model's state: PyTorch's GRU and LSTM return
it as ``[layers * directions, N, hidden]`` whether or not the model is ``batch_first``, and their
ONNX exports keep that layout. Code that runs samples in several runs and joins the results (the
compile's validation, the device's self-test, a runtime cutting a request into the model's fixed
batch) joins them along this axis, and code that compares outputs per sample reads them with the
samples first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.contracts.manifest import TensorSpec

if TYPE_CHECKING:  # this package's import loads no numpy (see agent.runtimes)
    import numpy as np


def per_run(spec: TensorSpec, values: np.ndarray) -> bool:
    """Whether sample ``values`` for input ``spec`` hold one whole input tensor per run (one axis
    more than the input has) rather than one sample per row: how samples of an input whose batch
    is not its first axis come (a recurrent state ``[layers, N, hidden]`` as ``[runs, layers, 1,
    hidden]``), and a scalar input's values (``[runs]``). Such a model runs one run at a time."""
    return values.ndim == len(spec.shape) + 1


def sample_axis(shape: Sequence[int], rows: int) -> int:
    """The axis of an output, from a run on ``rows`` samples, that holds those samples: 0 when
    its length is ``rows`` (the usual case, and the answer for a scalar), else the first axis of
    that length; 0 when no axis has it (an output that does not grow with the batch) (pure)."""
    if not shape or shape[0] == rows:
        return 0
    return next((i for i, n in enumerate(shape) if n == rows), 0)


def join_runs(values: Sequence[np.ndarray], rows: Sequence[int]) -> tuple[np.ndarray, int]:
    """One output's values from consecutive runs of ``rows[i]`` samples each, joined along the
    axis that holds the samples, and that axis. The axis is read from the run with the most
    samples, where another axis is least likely to have the same length (pure)."""
    import numpy as np

    if not values:
        raise ValueError("no runs to join")
    widest = max(range(len(values)), key=lambda i: rows[i])
    axis = sample_axis(values[widest].shape, rows[widest])
    return np.concatenate(values, axis=axis), axis


def samples_first(values: Sequence[np.ndarray], rows: Sequence[int]) -> np.ndarray:
    """:func:`join_runs` with the samples moved to axis 0 (``[N, ...]`` whatever the output's
    own layout), as per-sample comparisons read them (pure)."""
    import numpy as np

    joined, axis = join_runs(values, rows)
    return joined if axis == 0 else np.moveaxis(joined, axis, 0)


def first_rows(value: np.ndarray, rows: int, count: int) -> np.ndarray:
    """The first ``count`` samples of an output from a run on ``rows`` samples (a padded run's
    real ones), along the axis that holds them (pure)."""
    axis = sample_axis(value.shape, rows)
    return value[(slice(None),) * axis + (slice(0, count),)]
