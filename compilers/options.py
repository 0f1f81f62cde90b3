"""What a caller can ask of a compile (:class:`CompileOptions`)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as default
from pathlib import Path

from compilers.errors import CompileError
from compilers.metrics import check_metric

# "Dynamic" measures no ranges ahead of time: INT8 weights, activations quantized on each run
# (ONNX Runtime's dynamic quantization on onnx-x86, TFLite's dynamic range on tflite-arm). Where a
# target offers it, it is tried last, after mixed precision (:func:`compilers.pipeline._int8`).
DYNAMIC = "Dynamic"
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile", DYNAMIC)


@dataclass(frozen=True)
class CompileOptions:
    """Options of :func:`compilers.compile_model`; every field has a working default.

    ``precision``: ``int8``, ``fp16`` or ``fp32``; ``None`` takes the profile's.
    ``calibration``: ``.npz``/``.npy`` or an image folder with ``preprocess.yaml``.
    ``validation``: held-out ``.npz`` keyed by input name (or ``x``), labels optional under ``y``.
    ``min_agreement``: the gate on top-1 agreement with FP32 (classifiers only).
    ``samples``: self-test samples put into the bundle (0: none).
    ``latency_runs``: single-sample runs timed for each of FP32 and the compiled model (0: skip).
    ``threads``: intra-op threads for validation and timing (``None``: the runtime's default).
    ``max_batch``: largest batch a TensorRT optimisation profile allows for a dynamic batch dim.
    ``max_validation``: validation samples used at most.
    ``profiles_dirs``: extra directories of device profiles (override built-ins by name).
    ``name``/``version``: recorded in the manifest.
    ``input_shapes``: the size of each input to compile for, by input name (``--input-shape
    NAME=1,3,48,192``); it resolves the model's dynamic dims (a dynamic batch stays dynamic where
    the target supports one). Without it, the calibration (else validation) samples' shapes do.
    ``simplify``: fold constants and simplify the graph before the target runs (ONNX Runtime's
    basic graph optimisation, else onnxsim when installed).
    ``metric``: the gate's metric for every output (``top1``, ``cosine``, ``sqnr``, ``relerr``,
    ``exact``), ``OUTPUT=NAME,...`` for some outputs, or a user's ``module:function``; ``None``
    chooses per output (:mod:`compilers.metrics`).
    ``metric_threshold``: the named metrics' threshold (needs ``metric``).
    ``calibration_method``: ``MinMax``, ``Entropy``, ``Percentile`` or ``Dynamic`` (INT8
    weights, activations quantized at run time; onnx-x86 and tflite-arm); ``None`` tries the
    target's default, then the others when the gate fails, and ``Dynamic`` last, after mixed
    precision.
    ``mixed``: when an INT8 bundle fails its gate, keep its costliest layers in float and retry
    (at most ``mixed_attempts`` tries, at most ``mixed_max_share`` of the quantizable layers;
    each order of layers is tried first with three quarters of that, see :mod:`compilers.mixed`).
    ``precision="auto"``: the cheapest precision that passes the gate (INT8, mixed, FP16, FP32),
    never an INT8 or FP16 bundle measured slower than FP32 on this host.
    """

    precision: str | None = None
    calibration: Path | None = None
    validation: Path | None = None
    min_agreement: float = 0.99
    force: bool = False
    samples: int = 8
    latency_runs: int = 50
    threads: int | None = None
    max_batch: int = 8
    max_validation: int = 2000
    profiles_dirs: tuple[Path, ...] = ()
    name: str | None = None
    version: str | None = None
    seed: int = 0
    input_shapes: dict[str, tuple[int, ...]] = default(default_factory=dict)
    simplify: bool = True
    metric: str | None = None
    metric_threshold: float | None = None
    calibration_method: str | None = None
    mixed: bool = True
    mixed_attempts: int = 6
    mixed_max_share: float = 1 / 3

    def check(self) -> None:
        """Raise :class:`CompileError` for values no compile can honour."""
        if self.min_agreement < 0.0:
            # Above 1 is allowed: every classifier's gate then trips, which tests use.
            raise CompileError(f"min_agreement must not be negative, got {self.min_agreement}")
        for field, value, low in (
            ("samples", self.samples, 0),
            ("latency_runs", self.latency_runs, 0),
            ("max_batch", self.max_batch, 1),
            ("max_validation", self.max_validation, 1),
        ):
            if value < low:
                raise CompileError(f"{field} must be at least {low}, got {value}")
        if self.threads is not None and self.threads < 1:
            raise CompileError(f"threads must be at least 1, got {self.threads}")
        for name, dims in self.input_shapes.items():
            if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
                raise CompileError(
                    f"input_shapes[{name!r}] must be a list of positive integers, got {list(dims)}"
                )
        check_metric(self.metric)
        if self.metric_threshold is not None and self.metric is None:
            raise CompileError("metric_threshold needs a metric (--metric NAME or module:function)")
        if self.calibration_method is not None and self.calibration_method not in CALIBRATION_METHODS:
            raise CompileError(
                f"unknown calibration method {self.calibration_method!r}: use one of "
                f"{', '.join(CALIBRATION_METHODS)}"
            )
        if self.mixed_attempts < 1:
            raise CompileError(f"mixed_attempts must be at least 1, got {self.mixed_attempts}")
        if not 0.0 < self.mixed_max_share <= 1.0:
            raise CompileError(f"mixed_max_share must be in (0, 1], got {self.mixed_max_share}")


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"NAME=1,3,48,192"`` → ``("NAME", (1, 3, 48, 192))`` (``x`` also separates dims:
    ``1x3x48x192``). Raises :class:`CompileError` with the expected form."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d < 1 for d in shape):
        raise CompileError(
            f"--input-shape {text!r}: expected NAME=DIM,DIM,... with positive sizes, e.g. x=1,3,224,224"
        )
    return name, shape
