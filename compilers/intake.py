"""Normalise the source model once, before any target converts it.

Models from other exporters (paddle2onnx and older tf2onnx write opset 10 or 11, with dynamic batch,
height and width) trip every converter in its own way. :func:`normalise` fixes what can be fixed
without changing what the model computes, in this order, and says what it did, one line a step:

1. **opset**: a default-domain opset below 13 is upgraded with ``onnx.version_converter`` (to 17,
   else 13): per-channel QDQ needs ``DequantizeLinear``'s ``axis`` (opset 13), and TensorRT's
   parser and onnx2tf handle the newer forms of Softmax, Split, Squeeze and friends better. Other
   domains (``ai.onnx.ml`` from skl2onnx) are left at their versions; for a target without
   ``ai.onnx.ml`` kernels the linear ones are written in default-domain ops
   (:mod:`compilers.ml_ops`).
2. **shapes**: each dynamic dim takes its size from ``input_shapes`` (``--input-shape``), else
   from the calibration (else validation) samples; dim 0 stays dynamic where the target runs a
   dynamic batch (:class:`ShapePolicy`). Then ONNX shape inference fills the graph in.
3. **simplify**: constants folded and the graph simplified by ONNX Runtime's basic-level graph
   optimisation saved back to ONNX (semantics-preserving rewrites done before any provider is
   chosen), else by onnxsim when it is installed. A result with ops of a domain the source did
   not use (ONNX Runtime's ``com.microsoft``), or other inputs and outputs, is discarded. Slices
   that select their whole input are removed (:func:`drop_noop_slices`), and a Gemm bias of
   shape ``[1, N]`` becomes ``[N]`` (:func:`flat_gemm_bias`).
4. **external data**: a source whose weights live in separate files, or whose weights pass
   :data:`EXTERNAL_THRESHOLD`, is worked on as a skeleton (the weights stay in files; protobuf's
   2 GiB limit never applies) and saved the same way.

The FP32 reference for validation stays the untouched source, so anything this step got wrong
shows up as disagreement, not as a silently different model.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper, version_converter

from agent.contracts.manifest import Intake, TensorSpec
from compilers.errors import CompileError, ModelError, ShapeError
from compilers.ml_ops import lower_ml_ops
from compilers.modelcheck import iter_nodes, one_line, opset_of, tensor_specs

TARGET_OPSET = 17
MIN_OPSET = 13
EXTERNAL_THRESHOLD = 1 << 30  # weights above 1 GiB are kept in a separate file
MODEL_FILE = "model.onnx"
_DEFAULT_DOMAINS = ("", "ai.onnx")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ShapePolicy:
    """Which dynamic dims a target's model may keep: ``dynamic_batch`` for dim 0 (ONNX Runtime;
    TensorRT through optimisation profiles), ``dynamic_dims`` for the others when nothing gives
    their size (only ONNX Runtime runs any size). A target may set ``shape_policy`` itself."""

    dynamic_batch: bool
    dynamic_dims: bool


POLICIES = {
    "onnx-x86": ShapePolicy(dynamic_batch=True, dynamic_dims=True),
    "tensorrt-jetson": ShapePolicy(dynamic_batch=True, dynamic_dims=False),
    # onnx2tf fails on dynamic spatial dims; a dynamic batch it mostly keeps (a resizable
    # .tflite), and where it does not, its fixed-shape strategy (-b 1) fixes the batch at 1.
    "tflite-arm": ShapePolicy(dynamic_batch=True, dynamic_dims=False),
}
_DEFAULT_POLICY = ShapePolicy(dynamic_batch=True, dynamic_dims=True)


def shape_policy(target: Any) -> ShapePolicy:
    """The target's own ``shape_policy``, else the built-in one for its name, else keep-dynamic."""
    own = getattr(target, "shape_policy", None)
    if isinstance(own, ShapePolicy):
        return own
    return POLICIES.get(str(getattr(target, "name", "")), _DEFAULT_POLICY)


@dataclass(frozen=True)
class Normalised:
    """The normalised model, the file it was saved to (with its external data beside it), its
    inputs and outputs, what was done (:attr:`record`, for the manifest), and the reference
    model validation compares with (the untouched source unless an output changed form)."""

    model: onnx.ModelProto
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    record: Intake
    reference: Path  # the FP32 model to validate against: the source, or it with ZipMap dropped

    @property
    def steps(self) -> tuple[str, ...]:
        return self.record.steps


def normalise(
    model: onnx.ModelProto,
    source: Path,
    work: Path,
    policy: ShapePolicy,
    *,
    target: str,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    sample_shapes: Mapping[str, tuple[int, ...]] | None = None,
    need_opset: int | None = None,
    simplify: bool = True,
    lower_ml: bool = False,
    external_threshold: int = EXTERNAL_THRESHOLD,
    progress: Progress | None = None,
) -> Normalised:
    """Normalise ``model`` (loaded from ``source``) into ``work/model.onnx``; see the module
    docstring for the steps.

    ``sample_shapes`` are the calibration (or validation) arrays' shapes by input name (dim 0
    counts samples). ``need_opset``: the opset the compile can't do without (13 for INT8); when
    the upgrade fails below it, :class:`ModelError` says so, otherwise the old opset is kept and
    noted. ``lower_ml``: write scikit-learn's linear ``ai.onnx.ml`` ops in default-domain ops
    (:mod:`compilers.ml_ops`), for a target whose runtime has none. Raises :class:`ShapeError`
    for an ``input_shapes`` entry that names no input or does not fit it, and for a dynamic dim
    the target needs a size for that nothing gives.
    """
    say: Progress = progress or (lambda _msg: None)
    work.mkdir(parents=True, exist_ok=True)
    external = _has_external_data(model, source) or _weights_bytes(model) > external_threshold
    steps: list[str] = []
    original = model
    start = model = _skeleton(model, work) if external else model
    model = drop_zipmap(model, steps)
    reference = source
    if model is not start:  # outputs changed form: validate against the same form
        reference = work / "reference.onnx"
        _save(model, reference, external)

    model = upgrade_opset(model, source, steps, need_opset, say)
    if lower_ml:
        model = lower_ml_ops(model, steps)
    shapes = resolve_shapes(model, policy, target, input_shapes or {}, sample_shapes or {})
    shaped_steps = list(steps)
    shaped = apply_shapes(model, shapes, shaped_steps)
    if sample_shapes and policy.dynamic_dims and not external and _breaks_branches(model, shaped):
        # Sizes fixed from the samples broke a branch the samples never take (Silero VAD v5's
        # 8 kHz branch, once the input is fixed at its 16 kHz length): keep the model's own
        # dynamic dims, as ONNX Runtime runs them.
        shapes = resolve_shapes(model, policy, target, input_shapes or {}, {})
        steps.append(
            "input dims kept dynamic: fixed at the samples' sizes, the graph's If/Loop branches no "
            "longer load in ONNX Runtime"
        )
        shaped = apply_shapes(model, shapes, steps)
    else:
        steps[:] = shaped_steps
    model = shaped
    simplifier = None
    if simplify:
        say("folding constants and simplifying the graph")
        model, simplifier = simplify_model(model, work, external, steps)
        model = drop_noop_slices(model, steps)
    model = flat_gemm_bias(model, steps)

    if model is start:  # nothing to do: the target converts the source file itself
        model, path = original, source
    else:
        _strip_unused_opsets(model)
        path = work / MODEL_FILE
        _save(model, path, external)
        if external:
            steps.append("weights kept in an external data file")
    inputs, outputs = tensor_specs(model, source)
    record = Intake(
        steps=tuple(steps),
        source_opset=opset_of(original),
        opset=opset_of(model),
        input_shapes={s.name: tuple(s.shape) for s in inputs},
        simplifier=simplifier,
        external_data=external,
    )
    return Normalised(
        model=model, path=path, inputs=inputs, outputs=outputs, record=record, reference=reference
    )


def for_compile(
    model: onnx.ModelProto,
    source: Path,
    work: Path,
    target: Any,
    precision: str,
    options: Any,
    samples: Mapping[str, tuple[int, ...]],
    progress: Progress | None = None,
) -> Normalised:
    """:func:`normalise` as a compile runs it: the target's :class:`ShapePolicy`, the options'
    ``input_shapes`` and ``simplify``, opset 13 required for INT8. The returned inputs and
    outputs keep a dynamic batch (``-1``) where the source had one even when the target's model
    fixes it at 1: the device runtime runs larger batches through it in steps."""
    try:
        result = normalise(
            model,
            source,
            work,
            shape_policy(target),
            target=str(target.name),
            input_shapes={k: tuple(int(d) for d in v) for k, v in dict(options.input_shapes).items()},
            sample_shapes=samples,
            need_opset=MIN_OPSET if precision == "int8" else None,
            simplify=bool(options.simplify),
            lower_ml=not bool(getattr(target, "runs_onnx_ml", False)),
            progress=progress,
        )
    except CompileError:
        raise
    except Exception as exc:  # onnx's and the file system's own errors: one line, no traceback
        raise ModelError(
            f"{source}: normalising the model failed: {type(exc).__name__}: {one_line(exc, 200)} "
            "(try --no-simplify)"
        ) from exc
    return replace(
        result,
        inputs=_keep_dynamic_batch(result.inputs, _dynamic_batch(_real_inputs(model))),
        outputs=_keep_dynamic_batch(result.outputs, _dynamic_batch(model.graph.output)),
    )


def _dynamic_batch(values: Iterable[onnx.ValueInfoProto]) -> set[str]:
    """The names of the tensors among ``values`` whose dim 0 is dynamic."""
    out = set()
    for v in values:
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.HasField("shape"):
            dims = _dims(v)
            if dims and dims[0] < 0:
                out.add(v.name)
    return out


def _keep_dynamic_batch(specs: tuple[TensorSpec, ...], dynamic: set[str]) -> tuple[TensorSpec, ...]:
    return tuple(
        replace(s, shape=(-1, *s.shape[1:])) if s.name in dynamic and s.shape and s.shape[0] == 1 else s
        for s in specs
    )


# -- 0. outputs -------------------------------------------------------------------------------------


def drop_zipmap(model: onnx.ModelProto, steps: list[str]) -> onnx.ModelProto:
    """scikit-learn classifiers (skl2onnx, onnxmltools) end in an ``ai.onnx.ml`` ``ZipMap`` that
    turns the probability tensor into a sequence of {label: probability} maps, which no target
    or tensor contract takes: the graph output becomes the float tensor ``[N, classes]`` itself
    (same name; columns in the order of the ZipMap's class labels). ``model`` itself when there
    is none."""
    outputs = {o.name: o for o in model.graph.output}
    zips = [
        n
        for n in model.graph.node
        if n.op_type == "ZipMap" and n.domain == "ai.onnx.ml" and n.output[0] in outputs
        and n.input[0] not in outputs
    ]  # fmt: skip
    if not zips:
        return model
    model = _copy(model)
    outputs = {o.name: o for o in model.graph.output}
    for zipmap in [n for n in model.graph.node if n.op_type == "ZipMap" and n.output[0] in outputs]:
        src, dst = zipmap.input[0], zipmap.output[0]
        labels = next(
            (len(a.ints) or len(a.strings) for a in zipmap.attribute if a.name.startswith("classlabels")), 0
        )
        model.graph.node.remove(zipmap)
        for node in iter_nodes(model.graph):
            node.input[:] = [dst if x == src else x for x in node.input]
            node.output[:] = [dst if x == src else x for x in node.output]
        outputs[dst].type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, [None, labels or None]))
        steps.append(
            f"output {dst}: ZipMap dropped, a float tensor [?,{labels or '?'}] of class probabilities "
            "instead of a sequence of maps"
        )
    return model


# -- 1. opset ----------------------------------------------------------------------------------------


def upgrade_opset(
    model: onnx.ModelProto, source: Path, steps: list[str], need: int | None, say: Progress
) -> onnx.ModelProto:
    """``model`` at opset :data:`TARGET_OPSET` (else :data:`MIN_OPSET`) when its default-domain
    opset is below :data:`MIN_OPSET`; unchanged otherwise. Appends the step to ``steps``."""
    current = opset_of(model)
    if current is None or current >= MIN_OPSET:
        return model
    say(f"upgrading opset {current} to {TARGET_OPSET}")
    why = ""
    for to in (TARGET_OPSET, MIN_OPSET):
        try:
            upgraded = version_converter.convert_version(model, to)
            upgraded.ir_version = max(
                int(model.ir_version),
                helper.find_min_ir_version_for(list(upgraded.opset_import), ignore_unknown=True),
            )
            onnx.checker.check_model(upgraded)
        except Exception as exc:  # the converter raises RuntimeError, ValidationError and others
            why = one_line(exc, 160) or type(exc).__name__
            continue
        steps.append(f"opset {current} → {to}")
        return upgraded
    if need is not None and current < need:
        raise ModelError(
            f"{source}: opset {current} could not be upgraded to {MIN_OPSET}, which INT8 needs ({why}); "
            "re-export the model with opset 13 or newer, or try --precision fp16"
        )
    steps.append(f"opset {current} kept: the upgrade failed ({why})")
    return model


# -- 2. shapes ---------------------------------------------------------------------------------------


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
        for d in value.type.tensor_type.shape.dim
    ]


def _real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def show(shape: tuple[int, ...] | list[int]) -> str:
    """``[?,3,48,192]``: a shape as the steps write it (``?`` for a dynamic dim)."""
    return "[" + ",".join("?" if d < 0 else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class _Resolved:
    name: str
    before: tuple[int, ...]
    after: tuple[int, ...]
    batch_kept: bool
    batch_fixed: bool
    left: tuple[int, ...]  # non-batch dims left dynamic


def resolve_shapes(
    model: onnx.ModelProto,
    policy: ShapePolicy,
    target: str,
    requested: Mapping[str, tuple[int, ...]],
    samples: Mapping[str, tuple[int, ...]],
) -> list[_Resolved]:
    """The shape each input is compiled for (pure). Raises :class:`ShapeError`."""
    inputs = _real_inputs(model)
    names = [v.name for v in inputs]
    for name in requested:
        if name not in names:
            raise ShapeError(
                f"--input-shape {name}=...: the model has no input {name!r} (inputs: {', '.join(names)})"
            )
    out = []
    for value in inputs:
        before = tuple(_dims(value))
        want = requested.get(value.name)
        if want is not None:
            _check_requested(value.name, before, tuple(want))
        seen = samples.get(value.name)
        if seen is not None and len(seen) != len(before):
            seen = None  # the sample loader reports a rank mismatch in its own words
        after = list(before)
        batch_kept = batch_fixed = False
        left = []
        for i, d in enumerate(before):
            if d >= 0:
                continue
            if i == 0:
                if policy.dynamic_batch:
                    batch_kept = True
                else:
                    after[0] = want[0] if want is not None else 1
                    batch_fixed = True
                continue
            size = want[i] if want is not None else (seen[i] if seen is not None else -1)
            if size >= 1:
                after[i] = int(size)
            elif policy.dynamic_dims:
                left.append(i)
            else:
                example = ",".join(str(x if x > 0 else 1) for x in before)
                raise ShapeError(
                    f"input {value.name!r} {show(before)}: dim {i} is dynamic and target {target} "
                    f"needs its size; give --input-shape {value.name}={example} with the size to "
                    "compile for, or calibration data of that size"
                )
        out.append(_Resolved(value.name, before, tuple(after), batch_kept, batch_fixed, tuple(left)))
    return out


_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


def _breaks_branches(before: onnx.ModelProto, after: onnx.ModelProto) -> bool:
    """Whether ``after`` (``before`` with input dims fixed) has control flow and no longer loads
    in ONNX Runtime while ``before`` does: shape inference checks every branch, also those the
    fixed sizes never take."""
    if not any(n.op_type in _CONTROL_FLOW for n in before.graph.node):
        return False
    import onnxruntime as ort

    def loads(m: onnx.ModelProto) -> bool:
        so = ort.SessionOptions()
        # as the targets optimise it: the failing branch inference runs with the graph passes
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.log_severity_level = 4
        try:
            ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception:
            return False
        return True

    return not loads(after) and loads(before)


def _check_requested(name: str, model: tuple[int, ...], want: tuple[int, ...]) -> None:
    if len(want) != len(model):
        raise ShapeError(
            f"--input-shape {name}={','.join(map(str, want))}: rank {len(want)}, but input {name!r} "
            f"is {show(model)} (rank {len(model)})"
        )
    for i, (m, w) in enumerate(zip(model, want, strict=True)):
        if m >= 0 and m != w:
            raise ShapeError(
                f"--input-shape {name}={','.join(map(str, want))}: dim {i} is {w}, but the model fixes it "
                f"at {m} ({show(model)})"
            )


def _describe(r: _Resolved) -> str:
    line = f"input {r.name}: {show(r.before)} → {show(r.after)}"
    why = []
    if r.batch_kept:
        why.append("batch kept dynamic")
    if r.batch_fixed:
        why.append(f"batch fixed at {r.after[0]}")
    if r.left:
        why.append("dim " + ", ".join(map(str, r.left)) + " left dynamic: nothing gives its size")
    return line + (f" ({'; '.join(why)})" if why else "")


def apply_shapes(model: onnx.ModelProto, shapes: list[_Resolved], steps: list[str]) -> onnx.ModelProto:
    """Fix the resolved dims on the graph inputs, forget the exporter's intermediate and dynamic
    output shapes, and run ONNX shape inference (with data propagation, so shape arithmetic on
    fixed dims is known). A failing inference is noted and the model kept without it."""
    changed = [r for r in shapes if r.after != r.before]
    steps.extend(_describe(r) for r in shapes if r.after != r.before or r.left)
    odd = [v.name for v in _real_inputs(model) if _odd_dims(v)]
    if not changed and not odd:
        return model
    model = _copy(model)
    by_name = {v.name: v for v in model.graph.input}
    for name in odd:  # paddle2onnx writes a dynamic dim as dim_value -1, which onnx2tf refuses
        for i, d in enumerate(by_name[name].type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.Clear()
                d.dim_param = "batch" if i == 0 else f"{name}_{i}"
    for r in changed:
        dims = by_name[r.name].type.tensor_type.shape.dim
        for i, (old, new) in enumerate(zip(r.before, r.after, strict=True)):
            if old < 0 and new > 0:
                dims[i].Clear()
                dims[i].dim_value = new
    del model.graph.value_info[:]
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()  # inference fills it in, or it stays unknown (dynamic)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # inference raises for ops it has no shape function for
        steps.append(f"shape inference failed, shapes left as exported ({one_line(exc, 120)})")
        return model
    if all(_has_shape(v) for v in inferred.graph.output):
        return inferred
    return _restore_output_shapes(inferred, model)


def _odd_dims(value: onnx.ValueInfoProto) -> bool:
    """Whether a dynamic dim of ``value`` is spelled as a number (``-1`` or ``0``), not a name."""
    return any(d.HasField("dim_value") and d.dim_value <= 0 for d in value.type.tensor_type.shape.dim)


def _has_shape(value: onnx.ValueInfoProto) -> bool:
    return value.type.WhichOneof("value") != "tensor_type" or value.type.tensor_type.HasField("shape")


def _restore_output_shapes(inferred: onnx.ModelProto, before: onnx.ModelProto) -> onnx.ModelProto:
    old = {v.name: v for v in before.graph.output}
    for v in inferred.graph.output:
        if not _has_shape(v) and v.name in old:
            v.CopyFrom(old[v.name])
    return inferred


# -- 3. simplify -------------------------------------------------------------------------------------


def simplify_model(
    model: onnx.ModelProto, work: Path, external: bool, steps: list[str]
) -> tuple[onnx.ModelProto, str | None]:
    """Fold and simplify ``model``; returns it and the tool that did it (``None`` and ``model``
    itself when nothing was folded, or when every tool failed: the reasons go in ``steps``).
    ONNX Runtime's basic level first (it also fuses BatchNormalization and bias Adds into Conv:
    on three PaddleOCR models it left 181-364 nodes where onnxsim 0.8.1 left 220-545), then
    onnxsim when installed (not for external-data models)."""
    before = len(model.graph.node)
    tried: list[str] = []
    tools: list[tuple[str, Callable[[], onnx.ModelProto]]] = []
    tools.append(
        (f"ONNX Runtime {_ort_version()} basic level", lambda: _run_ort_basic(model, work, external))
    )
    sim = _onnxsim()
    if sim is not None and not external:
        tools.append(
            (
                f"onnxsim {getattr(sim, '__version__', '').lstrip('v')}".strip(),
                lambda: _run_onnxsim(sim, model),
            )
        )
    for name, run in tools:
        try:
            simplified = run()
        except Exception as exc:  # a simplifier's own failure: fall back to the next one
            tried.append(f"{name}: {one_line(exc, 100) or type(exc).__name__}")
            continue
        problem = _changed_contract(model, simplified)
        if problem:
            tried.append(f"{name}: {problem}")
            continue
        after = len(simplified.graph.node)
        if after >= before:
            return model, None  # nothing to fold: keep the model as it was
        steps.append(f"simplified with {name}: {before} → {after} nodes ({before - after} folded or fused)")
        return simplified, name
    steps.append("not simplified: " + "; ".join(tried))
    return model, None


def _onnxsim() -> Any:
    try:
        import onnxsim  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except Exception:  # not installed, or its native part does not load here
        return None
    return onnxsim


def _run_onnxsim(sim: Any, model: onnx.ModelProto) -> onnx.ModelProto:
    simplified, ok = sim.simplify(model, check_n=0)
    if not ok:
        raise RuntimeError("its check failed")
    return simplified


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def _run_ort_basic(model: onnx.ModelProto, work: Path, external: bool) -> onnx.ModelProto:
    import onnxruntime as ort

    src, dst = work / "pre-simplify.onnx", work / "simplified.onnx"
    _save(model, src, external)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    if external:
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", dst.name + ".data"
        )
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    out = onnx.load(str(dst), load_external_data=not external)
    with contextlib.suppress(OSError):
        src.unlink()
    return out


def _changed_contract(before: onnx.ModelProto, after: onnx.ModelProto) -> str | None:
    """Why ``after`` can't replace ``before`` (new op domains, other graph inputs or outputs,
    weights more than twice as large, fails the checker), or ``None``."""
    known = {n.domain or "" for n in iter_nodes(before.graph)} | {"", "ai.onnx"}
    new = sorted({n.domain for n in iter_nodes(after.graph)} - known)
    if new:
        return f"it added ops of domain {', '.join(new)}"
    if [v.name for v in _real_inputs(before)] != [v.name for v in _real_inputs(after)]:
        return "it changed the graph inputs"
    if [v.name for v in before.graph.output] != [v.name for v in after.graph.output]:
        return "it changed the graph outputs"
    grown, was = _weights_bytes(after), _weights_bytes(before)
    if grown > max(2 * was, was + (16 << 20)):  # folding an Expand or Tile can bloat the weights
        return f"it grew the weights from {was >> 20} MiB to {grown >> 20} MiB"
    try:
        onnx.checker.check_model(after)
    except Exception as exc:
        return f"its model fails the ONNX checker ({one_line(exc, 100)})"
    return None


def _strip_unused_opsets(model: onnx.ModelProto) -> None:
    """Drop opset imports no node uses (ONNX Runtime's saved models import a dozen domains);
    the default domain always stays."""
    used = {n.domain or "" for n in iter_nodes(model.graph)} | {f.domain for f in model.functions}
    keep = [o for o in model.opset_import if (o.domain or "") in used | {"", "ai.onnx"}]
    if len(keep) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(keep)


# -- 4. external data --------------------------------------------------------------------------------


def _has_external_data(model: onnx.ModelProto, source: Path) -> bool:
    """Whether the source file keeps weights outside itself (read from the file: the loaded
    model has the data inlined)."""
    with contextlib.suppress(Exception):
        raw = onnx.load(str(source), load_external_data=False)
        return any(external_data_helper.uses_external_data(t) for t in raw.graph.initializer)
    return False


def _weights_bytes(model: onnx.ModelProto) -> int:
    """The initializers' size in bytes, whether their data is inline or in external files."""
    return sum(_tensor_bytes(t) for t in model.graph.initializer)


def _tensor_bytes(t: onnx.TensorProto) -> int:
    if t.HasField("raw_data"):
        return len(t.raw_data)
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 4
    return itemsize * int(np.prod(t.dims))


def _skeleton(model: onnx.ModelProto, work: Path) -> onnx.ModelProto:
    """The model without its weights: they go to ``work/weights.data`` and the initializers
    point there, so every later step handles a small proto."""
    path = work / "weights.onnx"
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.data",
        size_threshold=1024,
    )
    skeleton = onnx.load(str(path), load_external_data=False)
    path.unlink()
    return skeleton


def _save(model: onnx.ModelProto, path: Path, external: bool) -> None:
    """Write ``model`` to ``path``. An external-data model refers to files beside ``path`` (the
    skeleton's ``weights.data``, or ONNX Runtime's ``.data``), which stay where they are."""
    if external:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    else:
        onnx.save(model, str(path))


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


@contextlib.contextmanager
def workdir(parent: Path | None = None) -> Iterator[Path]:
    """A private directory for the normalised model, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="edgefleet-intake-", dir=None if parent is None else str(parent)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- 3b. whole-tensor slices -------------------------------------------------------------------------

# An end at or past this selects to the end of any axis (exporters write INT_MAX, INT64_MAX or 1e9).
_TO_THE_END = 10**9


def drop_noop_slices(model: onnx.ModelProto, steps: list[str]) -> onnx.ModelProto:
    """``model`` without the ``Slice`` nodes that select their whole input (constant starts 0,
    ends at or past each axis's size, steps 1), their consumers reading the input instead;
    ``model`` itself when there is none. jax2tf and tf2onnx write such slices (a ``strided_slice``
    with every mask set), and onnx2tf, which moves tensors to channel-last, maps their axes
    onto the wrong dims: Google's Magika came out of it with every answer wrong."""
    inits = {i.name: i for i in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    try:
        typed = onnx.shape_inference.infer_shapes(model)
    except Exception:  # without shapes only ends past any size count
        typed = model
    dims = {
        v.name: _dims(v)
        for v in (*typed.graph.input, *typed.graph.value_info, *typed.graph.output)
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
    }

    def const(name: str) -> list[int] | None:
        t = inits.get(name)
        return None if t is None else [int(x) for x in np.asarray(numpy_helper.to_array(t)).ravel()]

    def whole(node: onnx.NodeProto) -> bool:
        if node.op_type != "Slice" or node.domain not in _DEFAULT_DOMAINS or len(node.input) < 3:
            return False
        if node.output[0] in graph_outputs:
            return False
        starts, ends = const(node.input[1]), const(node.input[2])
        shape = dims.get(node.input[0])
        rank = None if shape is None else len(shape)
        axes = const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if axes is None and len(node.input) > 3 and node.input[3]:
            return False  # axes computed at run time
        steps_ = const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        if starts is None or ends is None or (len(node.input) > 4 and node.input[4] and steps_ is None):
            return False
        axes = list(range(len(starts))) if axes is None else axes
        steps_ = steps_ or [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps_):
            return False
        for start, end, axis, step in zip(starts, ends, axes, steps_, strict=True):
            if step != 1 or start != 0:
                return False
            if axis < 0:
                if rank is None:
                    return False
                axis += rank
            size = shape[axis] if shape is not None and 0 <= axis < len(shape) else -1
            if end < _TO_THE_END and (size < 0 or end < size):
                return False
        return True

    noop = [n for n in model.graph.node if whole(n)]
    if not noop:
        return model
    model = _copy(model)
    rename: dict[str, str] = {}
    names = {n.output[0] for n in noop}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Slice" and node.output and node.output[0] in names:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
            continue
        kept.append(node)
    for sub in iter_nodes(model.graph):
        sub.input[:] = [rename.get(x, x) for x in sub.input]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    steps.append(
        f"{len(noop)} Slice node(s) that select their whole input removed "
        f"({', '.join(n.name or n.output[0] for n in noop[:3])}{', ...' if len(noop) > 3 else ''})"
    )
    return model


def flat_gemm_bias(model: onnx.ModelProto, steps: list[str]) -> onnx.ModelProto:
    """``model`` with each ``Gemm`` bias initializer of shape ``[1, N]`` written as ``[N]`` (the
    same values: ``C`` broadcasts to ``[M, N]`` either way); ``model`` itself when there is none.

    ONNX Runtime fuses ``MatMul`` + ``Add`` of a ``[1, N]`` constant (tf2onnx and jax2tf write
    Dense layers so) into such a Gemm, and its per-channel quantizer indexes that bias as if it
    were ``[N]``: quantizing failed ("truth value of an array ... is ambiguous"), and with the
    adjustment turned off the INT32 bias's ``DequantizeLinear`` failed at run time (Google's
    Magika)."""
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in iter_nodes(model.graph):
        for t in node.input:
            readers[t] = readers.get(t, 0) + 1

    def two_dim(node: onnx.NodeProto) -> bool:
        if node.op_type != "Gemm" or node.domain not in _DEFAULT_DOMAINS or len(node.input) < 3:
            return False
        c = inits.get(node.input[2])
        return c is not None and len(c.dims) == 2 and c.dims[0] == 1 and c.dims[1] > 1

    found = [n for n in model.graph.node if two_dim(n)]
    if not found:
        return model
    model = _copy(model)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if not two_dim(node):
            continue
        c = inits[node.input[2]]
        flat = numpy_helper.from_array(np.asarray(numpy_helper.to_array(c)).reshape(-1), c.name)
        if readers.get(c.name, 0) == 1:
            c.CopyFrom(flat)
        else:
            flat.name = f"{c.name}_flat"
            if flat.name not in inits:
                model.graph.initializer.append(flat)
                inits[flat.name] = flat
            node.input[2] = flat.name
    steps.append(
        f"{len(found)} Gemm bias(es) of shape [1, N] written as [N] "
        f"({', '.join(n.name or n.output[0] for n in found[:3])}{', ...' if len(found) > 3 else ''})"
    )
    return model
