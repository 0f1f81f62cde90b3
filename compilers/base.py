"""The interface a compiler target implements, and the data passed to and from it.

A target turns the checked source model into model files inside a staging directory. Everything
common to all targets (loading and checking the source, calibration data, validation against FP32,
the gate, self-test samples, the manifest, hashing and the atomic rename) is done once by
:mod:`compilers.pipeline`, so a target only converts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.contracts.manifest import TensorSpec
from compilers.mixed import RANKED_BY, LayerCost
from device_profiles import DeviceProfile

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CompileJob:
    """What a target gets: the source model (already checked), the profile, the precision, and
    calibration samples keyed by input name in the source layout (``None`` when the user gave
    none)."""

    source_path: Path
    profile: DeviceProfile
    precision: str
    calibration: dict[str, np.ndarray] | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: dict[str, Any] = field(default_factory=dict)
    progress: Progress = lambda _msg: None


@dataclass(frozen=True)
class TargetOutput:
    """What a target made, relative to the staging directory.

    ``files`` maps each path to its manifest role. ``inputs``/``outputs`` are the source tensors
    with the compiled model's names, layouts and quantization filled in. ``runnable_here`` is
    ``None`` when the bundle's own runtime can run on this host, else why not; then
    ``stand_in`` names a file of the bundle that ONNX Runtime can run for validation (the QDQ
    model TensorRT will build from). ``int8_in_float`` says why this host's INT8 kernels don't
    compute what the device's do (ONNX Runtime's x86 u8s8 kernels saturate on a CPU without
    VNNI, a VNNI device's don't): validation then computes the bundle's Q/DQ as float math, the
    exact integer result the device gets, and nothing is timed here.
    """

    entrypoint: str
    files: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    runtime_version: str
    build: dict[str, Any] = field(default_factory=dict)
    runnable_here: str | None = None
    stand_in: str | None = None
    int8_in_float: str | None = None
    notes: tuple[str, ...] = ()


class Target(ABC):
    """One compile target. Registered by name in the ``edgefleet.compilers`` entry-point group."""

    name: ClassVar[str]
    runtime: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    # INT8 calibration methods the target offers, its default first; () when it calibrates its
    # own way with no choice (``job.options["calibration_method"]`` is then never set).
    calibration_methods: ClassVar[tuple[str, ...]] = ()
    # How layer_costs ranks layers, in a few words for the manifest.
    layer_ranking: ClassVar[str] = RANKED_BY
    # Whether the target's runtime runs ``ai.onnx.ml`` ops; the intake lowers the linear ones
    # into default-domain ops for a target that does not (compilers.ml_ops).
    runs_onnx_ml: ClassVar[bool] = False

    @abstractmethod
    def check_ops(self, model: Any) -> None:
        """Raise :class:`~compilers.errors.UnsupportedOpError` for the first op this target
        can't take. ``model`` is an ``onnx.ModelProto``."""

    @abstractmethod
    def compile(self, job: CompileJob, staging: Path) -> TargetOutput:
        """Write the model files into ``staging``. Raises :class:`~compilers.errors.CompileError`."""

    def layer_costs(self, job: CompileJob, staging: Path) -> tuple[LayerCost, ...] | None:
        """The INT8 model just written to ``staging``, its layers ranked by quantization cost
        (costliest first), for mixed precision: the next compile of ``job`` with
        ``job.options["float_nodes"]`` naming some of them keeps those in float. ``None`` (the
        default) when the target can't keep layers in float."""
        return None

    def search_layers(
        self, job: CompileJob, staging: Path, ranked: tuple[LayerCost, ...], cap: int
    ) -> tuple[LayerCost, ...]:
        """Up to ``cap`` of ``ranked`` (from :meth:`layer_costs` on the INT8 model in
        ``staging``) chosen one by one by their effect at the model's outputs, where the target
        can put a layer in float without a new compile to score it; ``()`` (the default) where it
        can't or the graph is too large to search."""
        return ()
