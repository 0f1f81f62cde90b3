"""How large an inference request may be, from what the model's inputs can need (pure).

A device has little memory, so the body limit is not one large number for every model: a model
whose inputs are all of fixed size beyond the batch axis can need at most ``MAX_ROWS`` rows of
them, each value at most ``JSON_BYTES_PER_VALUE`` bytes as JSON text (``-1.2345678901234567e-300``
and its separator) or its item size as binary. Anything longer is refused with 413 before it is
read. A model with another dynamic dimension (an image of any size) gets the server-wide limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from agent.contracts.manifest import TensorSpec

JSON_BYTES_PER_VALUE = 32
MAX_ROWS = 256
HEADER_SLACK = 64 << 10  # names, shapes, parameters


def body_limit(inputs: Sequence[TensorSpec]) -> int | None:
    """The largest body a request for a model with these inputs can need, or ``None`` when an
    input has a dynamic dimension beyond the batch axis."""
    total = 0
    for t in inputs:
        dims = tuple(t.shape)
        batched = bool(dims) and dims[0] < 0
        rest = dims[1:] if batched else dims
        if any(d < 0 for d in rest):
            return None
        values = (MAX_ROWS if batched else 1) * math.prod(rest)
        total += values * max(JSON_BYTES_PER_VALUE, np.dtype(t.dtype).itemsize)
    return total + HEADER_SLACK
