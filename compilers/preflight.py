"""Pre-flight fit check: will the compiled model fit the device's memory and latency budget?

Pure: it takes an ONNX graph, sizes and timings, and returns figures; no files, no clocks.

Peak memory is estimated as weights + activations + runtime overhead:

* weights: the compiled model files' bytes (what the runtime keeps resident);
* activations: the largest working set of any single node at batch 1 (its non-constant inputs
  plus its outputs, shapes from ONNX shape inference, dynamic dims taken as 1). Runtimes reuse
  buffers between nodes, so this is the floor of their arena; the overhead constant covers the rest;
* overhead: a per-runtime constant for the library, its allocator and (TensorRT) the CUDA
  context, from typical resident sizes on the devices we target: ONNX Runtime 40 MiB, LiteRT
  10 MiB, TensorRT 600 MiB (CUDA context and cuDNN/cuBLAS on a Jetson).

The model fits when the estimate is at most :data:`MEMORY_SHARE` of the profile's memory, the
rest being left for the OS, the agent and the application.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, shape_inference

from device_profiles import DeviceProfile

MIB = 1 << 20
RUNTIME_OVERHEAD_MIB = {"onnxruntime": 40.0, "litert": 10.0, "tensorrt": 600.0}
DEFAULT_OVERHEAD_MIB = 50.0
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class MemoryEstimate:
    weights_mib: float
    activations_mib: float | None  # None when shape inference could not size the graph
    overhead_mib: float

    @property
    def total_mib(self) -> float:
        return self.weights_mib + (self.activations_mib or 0.0) + self.overhead_mib


@dataclass(frozen=True)
class FitResult:
    """Whether the model fits ``profile``: memory always, latency where it was measurable."""

    profile: str
    memory_estimate_mib: float
    memory_mib: int
    memory_share: float
    fits_memory: bool
    weights_mib: float
    activations_mib: float | None
    overhead_mib: float
    latency_budget_ms: float | None
    host_latency_ms: float | None  # measured on the build host, not on the device
    within_latency_budget: bool | None  # None: not measurable here
    latency_note: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def lines(self) -> list[str]:
        mem = (
            f"memory: ~{self.memory_estimate_mib:.0f} MiB estimated of {self.memory_mib} MiB "
            f"({'fits' if self.fits_memory else 'does NOT fit'} within {self.memory_share:.0%})"
        )
        return [mem, f"latency: {self.latency_note}"]


def _with_unit_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in copy.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.dim_value = 1
    return copy


def _tensor_bytes(value: onnx.ValueInfoProto) -> int | None:
    ttype = value.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in ttype.shape.dim]
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return int(np.prod(dims, dtype=np.int64)) * itemsize


def activation_peak_bytes(model: onnx.ModelProto) -> int | None:
    """The largest (inputs + outputs) of any node at batch 1, constants excluded; ``None`` when
    shape inference fails (e.g. a model over 2 GiB or with custom ops)."""
    try:
        inferred = shape_inference.infer_shapes(_with_unit_dims(model), strict_mode=False)
    except Exception:  # shape inference raises many types; the estimate simply becomes unknown
        return None
    g = inferred.graph
    sizes: dict[str, int] = {}
    for value in [*g.input, *g.value_info, *g.output]:
        size = _tensor_bytes(value)
        if size is not None:
            sizes[value.name] = size
    constants = {i.name for i in g.initializer}
    peak = 0
    for node in g.node:
        names = [n for n in [*node.input, *node.output] if n and n not in constants]
        peak = max(peak, sum(sizes.get(n, 0) for n in names))
    return peak


def estimate_memory(model: onnx.ModelProto, weights_bytes: int, runtime: str) -> MemoryEstimate:
    """Peak memory estimate for ``model`` (the source graph, for its shapes) whose compiled files
    take ``weights_bytes``, on ``runtime`` (see the module docstring for the method)."""
    act = activation_peak_bytes(model)
    return MemoryEstimate(
        weights_mib=weights_bytes / MIB,
        activations_mib=None if act is None else act / MIB,
        overhead_mib=RUNTIME_OVERHEAD_MIB.get(runtime, DEFAULT_OVERHEAD_MIB),
    )


def check_fit(
    profile: DeviceProfile,
    memory: MemoryEstimate,
    host_latency_ms: float | None,
    latency_unmeasurable: str | None,
) -> FitResult:
    """Compare the estimate with ``profile.memory_mb`` and, when ``latency_unmeasurable`` is
    ``None``, the build host's latency with ``profile.latency_budget_ms``."""
    budget = profile.latency_budget_ms
    within: bool | None = None
    if budget is None:
        note = f"profile {profile.name} sets no latency budget"
    elif latency_unmeasurable is not None or host_latency_ms is None:
        note = f"budget {budget:g} ms; not measurable here ({latency_unmeasurable or 'no measurement'})"
    else:
        within = host_latency_ms <= budget
        note = (
            f"build-host latency {host_latency_ms:.3f} ms (batch 1) is "
            f"{'within' if within else 'OVER'} the {budget:g} ms budget; the device's own CPU decides"
        )
    return FitResult(
        profile=profile.name,
        memory_estimate_mib=memory.total_mib,
        memory_mib=profile.memory_mb,
        memory_share=MEMORY_SHARE,
        fits_memory=memory.total_mib <= profile.memory_mb * MEMORY_SHARE,
        weights_mib=memory.weights_mib,
        activations_mib=memory.activations_mib,
        overhead_mib=memory.overhead_mib,
        latency_budget_ms=budget,
        host_latency_ms=host_latency_ms,
        within_latency_budget=within,
        latency_note=note,
    )
