"""Map tensors between the source model's form (what clients send) and the compiled model's
(layout and quantization), as each tensor's manifest entry says. Pure numpy, no runtime."""

from __future__ import annotations

import numpy as np

from agent.contracts.manifest import TensorSpec


def check_input(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """Return ``value`` as the source dtype, or raise ``ValueError`` naming the tensor when its
    rank or a fixed dimension differs from ``spec.shape`` (``-1`` dims accept any size)."""
    arr = np.asarray(value)
    if arr.ndim != len(spec.shape):
        raise ValueError(
            f"input {spec.name!r}: expected rank {len(spec.shape)} {list(spec.shape)}, got {list(arr.shape)}"
        )
    for i, (want, got) in enumerate(zip(spec.shape, arr.shape, strict=True)):
        if want >= 0 and want != got:
            raise ValueError(
                f"input {spec.name!r}: dim {i} must be {want}, got {got} (shape {list(arr.shape)})"
            )
    try:
        return arr.astype(np.dtype(spec.dtype), copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"input {spec.name!r}: can't convert {arr.dtype} to {spec.dtype}") from exc


def to_model(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """Source-form input → the compiled model's input (transpose, then quantize)."""
    arr = check_input(spec, value)
    if spec.transpose is not None:
        arr = np.ascontiguousarray(np.transpose(arr, spec.transpose))
    q = spec.quantization
    if q is not None:
        info = np.iinfo(np.dtype(q.dtype))
        arr = np.clip(np.round(arr / q.scale + q.zero_point), info.min, info.max).astype(q.dtype)
    return arr


def from_model(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """Compiled model's output → source form (dequantize, then undo the transpose)."""
    arr = np.asarray(value)
    q = spec.quantization
    if q is not None:
        arr = (arr.astype(np.float32) - q.zero_point) * np.float32(q.scale)
    if spec.transpose is not None:
        arr = np.transpose(arr, np.argsort(spec.transpose))
    return np.ascontiguousarray(arr.astype(np.dtype(spec.dtype), copy=False))
