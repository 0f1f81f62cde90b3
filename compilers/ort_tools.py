"""ONNX Runtime's offline tools, wrapped once for every target that emits ONNX: graph
optimisation, static QDQ and dynamic INT8 quantization, FP16 conversion.

Each function reads one model file and writes another, and turns the toolkit's own exceptions
into :class:`~compilers.errors.ToolchainError` with a one-line reason (the seam where foreign
errors are translated).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx

from agent.contracts.manifest import TensorSpec
from compilers.batching import iter_batches, run_batch, usable_rows
from compilers.errors import ToolchainError
from compilers.modelcheck import iter_nodes, one_line

log = logging.getLogger(__name__)
T = TypeVar("T")
# Calibration runs the augmented model batch by batch; 16 rows keeps memory flat for big inputs.
CALIBRATION_BATCH = 16
HISTOGRAM_ROWS = 16  # calibration samples the histogram calibrators use at most (memory)
_ONNX_DOMAINS = ("", "ai.onnx")


def _tool(what: str, fn: Callable[[], T]) -> T:
    _quiet_sessions()
    try:
        return fn()
    except ToolchainError:
        raise
    except Exception as exc:
        raise ToolchainError(f"{what} failed: {type(exc).__name__}: {one_line(exc)}") from exc


@functools.cache
def _quiet_sessions() -> None:
    """ONNX Runtime's default log to errors only, for the sessions its quantization tools open
    themselves (``quant_pre_process`` warned once per unused initializer: hundreds of lines on a
    Keras export). Sessions the compiler and the agent open set their own level."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def optimize(src: Path, dst: Path, level: str = "ORT_ENABLE_EXTENDED") -> None:
    """Write ONNX Runtime's offline-optimised graph of ``src`` to ``dst``.

    EXTENDED fuses into ``com.microsoft`` ops that every CPU build of ONNX Runtime has; ALL would
    add layout transforms tied to this host's CPU, so it is never used offline.
    """
    import onnxruntime as ort

    def run() -> None:
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.optimized_model_filepath = str(dst)
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])

    _tool("ONNX Runtime graph optimisation", run)
    prune_opset_imports(dst)


def pre_process(src: Path, dst: Path) -> None:
    """``quant_pre_process``: symbolic shape inference plus basic (portable) graph optimisation, as
    the quantizer expects. Falls back to ONNX shape inference when the symbolic pass can't cope."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def run() -> None:
        # ONNX Runtime's symbolic pass, when it can't infer every shape, saves its partial model
        # (and a copy of the weights) into the current directory before it raises: ask first.
        if not _symbolic_shapes_complete(src):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return
        try:
            quant_pre_process(str(src), str(dst))
        except Exception:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)

    _tool("quantization pre-processing", run)
    name_nodes(dst)


def _symbolic_shapes_complete(path: Path) -> bool:
    """Whether ONNX Runtime's symbolic shape inference infers every shape of the model at ``path``
    (its ``infer_shapes`` loop, without the file it writes into the current directory when not)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        ssi = SymbolicShapeInference(2**31 - 1, False, False, 0)
        ssi._preprocess(onnx.load(str(path)))
        done = False
        while ssi.run_:
            done = ssi._infer_impl()
        return bool(done)
    except Exception:  # its own failures: the caller skips the symbolic pass
        return False


def name_nodes(path: Path) -> None:
    """Give every unnamed node of the main graph a name (``<OpType>_<index>``, unique), so that
    layers can be named to keep in float (``nodes_to_exclude``) and in reports. Deterministic:
    the same model gets the same names every time."""
    model = onnx.load(str(path))
    taken = {n.name for n in model.graph.node if n.name}
    changed = False
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{i}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        changed = True
    if changed:
        onnx.save(model, str(path))


class SampleReader:
    """A ``CalibrationDataReader`` over in-memory samples, in batches the model can take."""

    def __init__(
        self, samples: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...], equal_batches: bool = False
    ) -> None:
        batch = run_batch(inputs, CALIBRATION_BATCH, samples)
        rows = usable_rows(len(next(iter(samples.values()))), inputs, samples)
        if equal_batches:
            # ONNX Runtime's histogram calibrators (Entropy, Percentile) keep every activation of
            # every sample in memory before building histograms (a PP-OCR recognizer took over
            # 20 GB for 48 samples), and stack the batches into one array, which a shorter last
            # batch breaks: at most HISTOGRAM_ROWS rows, in equal batches.
            rows = min(rows, usable_rows(HISTOGRAM_ROWS, inputs, samples) or rows)
            if rows > batch:
                rows -= rows % batch
        if rows == 0:
            raise ToolchainError(f"calibration needs at least {batch} samples for this fixed-batch model")
        model_names = {s.name: s.model_name or s.name for s in inputs}
        trimmed = {model_names[k]: v[:rows] for k, v in samples.items()}
        renamed = tuple(replace(s, name=model_names[s.name]) for s in inputs)
        self._batches = iter(list(iter_batches(trimmed, batch, renamed)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the reader interface; calibration is single-pass here
        pass


def reader_of(samples: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...], rows: int) -> Any:
    """A :class:`SampleReader` over the first ``rows`` samples that is also an iterator, as ONNX
    Runtime's debugging tools (``collect_activations``) and a plain ``for`` loop read it."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(SampleReader, CalibrationDataReader):
        def __iter__(self) -> _Reader:
            return self

        def __next__(self) -> dict[str, np.ndarray]:
            item = self.get_next()
            if item is None:
                raise StopIteration
            return item

    n = min(rows, len(next(iter(samples.values()))))
    return _Reader({k: v[:n] for k, v in samples.items()}, inputs)


@dataclass(frozen=True)
class QdqSettings:
    """How :func:`quantize_qdq` quantizes; the defaults suit ONNX Runtime on x86 (U8S8)."""

    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = True
    symmetric: bool = False  # TensorRT needs zero points of 0 for weights and activations
    reduce_range: bool = False  # 7-bit weights: avoids u8s8 overflow on x86 without VNNI
    quantize_bias: bool = True  # TensorRT's parser dequantizes only INT8, not INT32 biases
    calibration: str = "MinMax"  # onnxruntime.quantization.CalibrationMethod: MinMax, Entropy, Percentile
    # Q/DQ only on the inputs of these op types (None: every op type ONNX Runtime's QDQ quantizer
    # takes, which suits ONNX Runtime's fused integer kernels)
    op_types: tuple[str, ...] | None = None
    # op types whose outputs get no Q/DQ (only the inputs of the next quantized layer do)
    float_outputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "QDQ",
            "activation_type": self.activation_type,
            "weight_type": self.weight_type,
            "per_channel": self.per_channel,
            "symmetric": self.symmetric,
            "reduce_range": self.reduce_range,
            "quantize_bias": self.quantize_bias,
            "calibration": self.calibration,
            **({"op_types": list(self.op_types)} if self.op_types is not None else {}),
            **({"float_outputs": list(self.float_outputs)} if self.float_outputs else {}),
            **({"calibration_rows_max": HISTOGRAM_ROWS} if self.calibration != "MinMax" else {}),
        }


# Calibration samples run to find tensors that hold infinities (:func:`non_finite_nodes`).
NON_FINITE_ROWS = 4


# Values at least this large count as unbounded: HuggingFace's attention masks fill with
# float32's lowest value, whose range the histogram calibrators can't even span (numpy overflows
# computing the bin edges), and a MinMax scale of ~1e36 rounds every score to 0.
UNBOUNDED = 1e30


def _unbounded(value: Any) -> bool:
    v = np.asarray(value)
    if v.dtype.kind != "f" or v.size == 0:
        return False
    with np.errstate(invalid="ignore"):
        return not bool(np.isfinite(v).all()) or float(np.nanmax(np.abs(v))) >= UNBOUNDED


def non_finite_nodes(
    src: Path, samples: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...], rows: int = NON_FINITE_ROWS
) -> tuple[str, ...]:
    """The nodes of ``src`` (pre-processed, nodes named) that write or read a float tensor
    holding an infinity, a NaN or a value of magnitude :data:`UNBOUNDED` or more on the first
    ``rows`` calibration samples, in graph order: an attention mask filled with ``-inf``
    (PyTorch's ``key_padding_mask``) or float32's lowest value (HuggingFace's), added to the
    scores before a Softmax. No INT8 scale represents it (the histogram calibrators refuse the range; a
    MinMax scale of ``inf`` turns the whole tensor to NaN), so these stay float. Raises
    :class:`ToolchainError`."""
    import tempfile

    from onnxruntime.quantization import qdq_loss_debug as dbg

    def run() -> tuple[str, ...]:
        with tempfile.TemporaryDirectory(prefix="edgefleet-finite-") as tmp:
            aug = Path(tmp) / "aug.onnx"
            dbg.modify_model_output_intermediate_tensors(str(src), str(aug))
            acts = dbg.collect_activations(str(aug), reader_of(samples, inputs, rows))
        bad = {name for name, values in acts.items() if any(map(_unbounded, values))}
        if not bad:
            return ()
        graph = onnx.load(str(src), load_external_data=False).graph
        return tuple(n.name for n in graph.node if bad & {*n.input, *n.output})

    return _tool("looking for tensors that hold infinities", run)


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether ``model`` has a QuantizeLinear node (in any subgraph): static INT8 quantized some
    of it."""
    return any(n.op_type == "QuantizeLinear" for n in iter_nodes(model.graph))


def non_finite_record(quantization: dict[str, Any], nodes: tuple[str, ...]) -> list[str]:
    """Record the nodes :func:`quantize_qdq` kept in float around tensors with infinities in the
    manifest's ``quantization`` entry; the note that says so (none when there were none)."""
    if not nodes:
        return []
    quantization["non_finite_nodes"] = list(nodes)
    return [
        f"{len(nodes)} node(s) reading or writing tensors that hold infinities or float32's lowest "
        f"value (an attention mask) kept in float, which no INT8 scale represents: {', '.join(nodes[:4])}"
        + ("..." if len(nodes) > 4 else "")
    ]


def quantize_qdq(
    src: Path,
    dst: Path,
    samples: dict[str, np.ndarray],
    inputs: tuple[TensorSpec, ...],
    settings: QdqSettings,
    nodes_to_exclude: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Static INT8 quantization of ``src`` (already pre-processed) into QDQ form, calibrated
    over ``samples`` with ``settings.calibration``; the nodes named in ``nodes_to_exclude`` stay
    float, and so do the nodes around tensors that hold infinities (:func:`non_finite_nodes`),
    which are returned. Raises :class:`ToolchainError`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(SampleReader, CalibrationDataReader):
        pass

    extra = {
        "ActivationSymmetric": settings.symmetric,
        "WeightSymmetric": True if settings.symmetric else None,
        "QuantizeBias": settings.quantize_bias,
        "OpTypesToExcludeOutputQuantization": list(settings.float_outputs) or None,
    }

    def _quantize(reader: Any, options: dict[str, Any]) -> None:
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=getattr(QuantType, settings.activation_type),
            weight_type=getattr(QuantType, settings.weight_type),
            calibrate_method=getattr(CalibrationMethod, settings.calibration),
            nodes_to_exclude=list(nodes_to_exclude),
            op_types_to_quantize=list(settings.op_types) if settings.op_types is not None else None,
            extra_options={k: v for k, v in options.items() if v is not None},
        )

    def reader() -> Any:
        return _Reader(samples, inputs, equal_batches=settings.calibration != "MinMax")

    unbounded = tuple(n for n in non_finite_nodes(src, samples, inputs) if n not in nodes_to_exclude)
    if unbounded:
        log.info("keeping %d node(s) around tensors with infinities in float", len(unbounded))
    nodes_to_exclude = (*nodes_to_exclude, *unbounded)

    def run() -> None:
        _quiet_calibrators()
        # The calibrator still ranges the excluded tensors (it picks tensors by op type), and the
        # quantizer divides by their infinite range before it leaves them out: numpy warns.
        quiet: Any = contextlib.nullcontext()
        if unbounded:
            quiet = np.errstate(invalid="ignore", divide="ignore", over="ignore")
        try:
            with quiet:
                _quantize(reader(), extra)
        except ValueError as exc:
            if not _raised_in(exc, _BIAS_SCALE_ADJUSTMENT):
                raise
            # ONNX Runtime's per-channel weight-scale adjustment for INT32 biases indexes a
            # bias of shape [1, N] (a Gemm's, as tf2onnx writes it) as if it were [N] and fails;
            # quantize again without that adjustment.
            log.info("quantizing again without the INT32 bias scale adjustment: %s", exc)
            with quiet:
                _quantize(reader(), {**extra, "QDQDisableWeightAdjustForInt32Bias": True})

    _tool(f"static INT8 quantization ({settings.calibration} calibration)", run)
    prune_opset_imports(dst)
    return unbounded


_BIAS_SCALE_ADJUSTMENT = "_adjust_weight_scale_for_int32_bias"


def _raised_in(exc: BaseException, function: str) -> bool:
    """Whether ``exc`` was raised inside a function named ``function`` (its traceback's frames)."""
    return any(frame.name == function for frame in traceback.extract_tb(exc.__traceback__))


def _quiet_calibrators() -> None:
    """The histogram calibrators print their progress with ``print``; stdout belongs to the caller
    (``-o json``). Their module's ``print`` goes to the debug log instead. Not by swapping
    ``sys.stdout`` (``contextlib.redirect_stdout``): that is one global for every thread, and a
    compile runs on the fleet server's worker threads beside other code that uses stdout."""
    from onnxruntime.quantization import calibrate

    def to_log(*args: Any, **_kwargs: Any) -> None:
        log.debug("onnxruntime calibration: %s", " ".join(str(a) for a in args))

    calibrate.print = to_log


# What dynamic INT8 quantizes in its weights-only form (ONNX Runtime's integer-op registry less
# Conv): matrix products (its quantizer rewrites a Gemm as MatMul + Add first), recurrent cells,
# attention and embedding tables. Convolutions stay in float: as ``ConvInteger`` they ran about
# 10x slower than FP32 here.
WEIGHTS_ONLY_OPS = ("MatMul", "Gather", "LSTM", "Attention", "EmbedLayerNormalization")
_TAKEN_OPS = frozenset({*WEIGHTS_ONLY_OPS, "Gemm"})
# Layers with weights that static QDQ quantizes and the weights-only form leaves in float.
_WEIGHTED_FLOAT_OPS = frozenset({"Conv", "ConvTranspose"})


def quantize_dynamic_int8(
    src: Path,
    dst: Path,
    nodes_to_exclude: tuple[str, ...] = (),
    op_types: tuple[str, ...] | None = None,
    per_channel: bool = False,
    reduce_range: bool = False,
) -> None:
    """Dynamic INT8: weights quantized offline, activations at run time (no calibration data).
    ``src`` should be pre-processed (:func:`pre_process`) like for static quantization.
    ``op_types``: only these op types (``None``: every one ONNX Runtime's dynamic quantizer takes,
    convolutions included); ``per_channel``: a scale per output channel of each weight;
    ``reduce_range``: 7-bit weights, for CPUs without VNNI (see :mod:`compilers.onnx_x86`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run() -> None:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude),
            op_types_to_quantize=list(op_types) if op_types is not None else None,
            per_channel=per_channel,
            reduce_range=reduce_range,
        )

    _tool("dynamic INT8 quantization", run)
    prune_opset_imports(dst)


def has_int8_weights(path: Path) -> bool:
    """Whether the model at ``path`` holds any 8-bit initializer (a quantizer found something to
    quantize)."""
    model = onnx.load(str(path), load_external_data=False)
    eight = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return any(t.data_type in eight for t in model.graph.initializer)


def weighted_layers(path: Path, excluded: tuple[str, ...] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The named nodes with weights (an initializer input) of the model at ``path``, in graph
    order, split into those the weights-only form of dynamic INT8 quantizes and those it leaves in
    float (convolutions and the ``excluded``)."""
    model = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in model.graph.initializer}
    taken: list[str] = []
    kept: list[str] = []
    for node in iter_nodes(model.graph):
        if not node.name or not any(i in init for i in node.input[:3]):
            continue
        if node.name in excluded or node.op_type in _WEIGHTED_FLOAT_OPS:
            kept.append(node.name)
        elif node.op_type in _TAKEN_OPS:
            taken.append(node.name)
    return tuple(taken), tuple(kept)


_NOT_COMPUTE = frozenset({"Cast", "Identity", "Constant"})


def fp32_only_ops(src: Path) -> tuple[str, ...] | None:
    """The op types of the model at ``src`` when :func:`to_fp16` would leave every one of them in
    FP32 (a tree ensemble, an SVM, scikit-learn's linear models: ops ONNX Runtime's converter keeps
    in float, or of another domain), so its "FP16" model would be the FP32 one between casts;
    ``None`` when something converts."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    ops = [
        n
        for n in iter_nodes(onnx.load(str(src), load_external_data=False).graph)
        if n.op_type not in _NOT_COMPUTE
    ]
    if any(n.domain in _ONNX_DOMAINS and n.op_type not in DEFAULT_OP_BLOCK_LIST for n in ops):
        return None
    return tuple(dict.fromkeys(n.op_type for n in ops)) or ("no op",)


def to_fp16(src: Path, dst: Path) -> None:
    """FP16 weights and compute, FP32 inputs and outputs (``keep_io_types``) so clients don't
    change; ONNX Runtime inserts the casts at the edges."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    def run() -> None:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))

    _tool("FP16 conversion", run)
    prune_opset_imports(dst)


def prune_opset_imports(path: Path) -> None:
    """Drop opset imports of domains no node uses. ONNX Runtime's tools import a dozen internal
    domains (training, aten, nchwc); older runtimes and TensorRT's parser need not see them."""
    model = onnx.load(str(path))
    used = {n.domain for n in iter_nodes(model.graph)} | set(_ONNX_DOMAINS)
    used |= {f.domain for f in model.functions}
    keep = [imp for imp in model.opset_import if imp.domain in used]
    if len(keep) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(keep)
        onnx.save(model, str(path))


def cpu_kernels() -> frozenset[tuple[str, str]]:
    """(domain, op) pairs ONNX Runtime's CPU provider has a kernel for, as installed here."""
    from onnxruntime.capi import _pybind_state as c_api

    return frozenset(
        (d.domain or "", d.op_name)
        for d in c_api.get_all_opkernel_def()
        if d.provider == "CPUExecutionProvider"
    )
