"""The compile pipeline: ONNX model + device profile (+ calibration data) → a verified bundle.

Steps, in order (each failure is a one-line :class:`~compilers.errors.CompileError` and leaves no
output directory):

1. load and check the ONNX model; describe its inputs and outputs;
2. resolve the profile, its target and the precision;
3. read calibration and validation samples; normalise the model once (:mod:`compilers.intake`:
   opset, shapes, folding); the target checks the ops; decide which samples validate;
4. in a staging directory beside ``out_dir``, the target writes its model files;
5. validate against FP32, every output with its metric (:mod:`compilers.metrics`), and apply the
   gate. For INT8 a refused bundle is tried again with the target's other calibration methods,
   then with layers kept in float (:mod:`compilers.mixed`: the costliest, then from both ends; within
   ``mixed_attempts``/``mixed_max_share``); ``precision="auto"`` goes on to FP16 and FP32, and
   passes over a bundle measured slower than FP32 on this host. Each attempt has its own staging
   directory; all but the one shipped are removed;
6. pre-flight fit check, self-test samples, manifest; verify the bundle; rename it into place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from agent.contracts.manifest import (
    FileEntry,
    Intake,
    Manifest,
    MixedPrecision,
    OutputMetric,
    SelfTest,
    TensorSpec,
    Validation,
)
from agent.runtimes import RuntimeLoadError, per_run, sha256_file
from compilers import intake
from compilers.base import CompileJob, Target, TargetOutput
from compilers.bundle import check_destination, discard, file_entries, make_staging, publish, write_manifest
from compilers.calibration import SampleSet, load_samples
from compilers.errors import CalibrationError, CompileError, TargetError, ToolchainError, ValidationGateError
from compilers.hostcpu import host_arch, host_has_vnni
from compilers.mixed import (
    FIRST_REACH,
    SEARCH_POOL,
    SEARCHED_BY,
    LayerCost,
    allowance,
    from_the_ends,
    gate_nearness,
    joined_layers,
)
from compilers.modelcheck import (
    input_specs,
    load_model,
    model_info,
    one_line,
    pooled_outputs,
    refuse_quantized,
)
from compilers.options import DYNAMIC, CompileOptions
from compilers.preflight import FitResult, check_fit, estimate_memory
from compilers.registry import get_target
from compilers.report import CompileReport
from compilers.selftest import write_selftest
from compilers.validate import (
    Comparison,
    SamplePlan,
    compare,
    compiled_adapter,
    gate_failure,
    measure_latencies,
    measure_latency,
    plan_samples,
    run_all,
    source_adapter,
)
from device_profiles import DeviceProfile, ProfileError, load_profile

__all__ = ["CompileOptions", "CompileReport", "compile_model"]

Progress = Callable[[str], None]


def compile_model(
    source: Path,
    profile: str | DeviceProfile,
    out_dir: Path,
    options: CompileOptions | None = None,
    progress: Progress | None = None,
) -> CompileReport:
    """Compile ``source`` for ``profile`` into the bundle directory ``out_dir``.

    Returns the :class:`CompileReport`. Raises a :class:`~compilers.errors.CompileError` subclass
    with a one-line reason (``ModelError``, ``TargetError``, ``UnsupportedOpError``,
    ``CalibrationError``, ``ToolchainError``, ``ValidationGateError``); then nothing exists at
    ``out_dir`` (or, with ``force``, the old bundle is still there).
    """
    opts = options or CompileOptions()
    say: Progress = progress or (lambda _msg: None)
    source, out_dir = Path(source), Path(out_dir)
    opts.check()

    say(f"checking {source}")
    model = load_model(source)
    refuse_quantized(model, source)
    inputs = input_specs(model, source)
    prof = resolve_profile(profile, opts)
    target = get_target(prof.target)
    check_runtime(target, prof)
    precision = choose_precision(target, prof, opts)
    say(f"profile {prof.name}: target {target.name}, precision {precision}")
    check_destination(out_dir, opts.force)

    calibration = _read(opts.calibration, inputs, "calibration data", say)
    validation = _read(opts.validation, inputs, "validation data", say)
    with intake.workdir() as work:
        shaped = calibration if calibration is not None else validation
        # Inputs whose samples come as whole tensors per run (per_run: a state with its batch on
        # a later axis, a scalar) give no sizes: their dynamic dims stay as the model has them
        # (or --input-shape fixes them). A recurrent state fixed at batch 1 can break the graph: a
        # Squeeze without axes then drops the batch too (Silero VAD v5).
        specs = {s.name: s for s in inputs}
        given = shaped.inputs if shaped else {}
        samples = {k: tuple(v.shape) for k, v in given.items() if not per_run(specs[k], v)}
        normal = intake.for_compile(model, source, work, target, precision, opts, samples, say)
        model, inputs, outputs = normal.model, normal.inputs, normal.outputs
        target.check_ops(model)
        plan = plan_samples(calibration, validation, inputs, opts.max_validation, opts.seed)
        req = _Request(
            source,
            sha256_file(source),
            model,
            prof,
            target,
            precision,
            inputs,
            outputs,
            plan,
            opts,
            say,
            normal.path,
            normal.record,
            normal.reference,
            scratch=work / "targets",
        )

        tries = _Tries(out_dir)
        try:
            return _build(req, tries, out_dir)
        finally:
            tries.discard_all()


def resolve_profile(profile: str | DeviceProfile, options: CompileOptions) -> DeviceProfile:
    """The profile object for a name or path. Raises :class:`TargetError` (one line, naming the
    known profiles for an unknown name, or the file and field for a bad one)."""
    if isinstance(profile, DeviceProfile):
        return profile
    try:
        return load_profile(profile, list(options.profiles_dirs) or None)
    except ProfileError as exc:
        raise TargetError(one_line(exc, 400)) from exc


def check_runtime(target: Target, profile: DeviceProfile) -> None:
    """Raise :class:`TargetError` when the profile's runtime is not the one the target builds for
    (the profile loader pins built-in targets; this catches a plug-in target's profiles)."""
    if profile.runtime.name != target.runtime:
        raise TargetError(
            f"profile {profile.name}: target {target.name} builds for runtime {target.runtime!r}, "
            f"the profile names {profile.runtime.name!r}"
        )


def choose_precision(target: Target, profile: DeviceProfile, options: CompileOptions) -> str:
    """``options.precision`` or the profile's (``auto`` included); raises :class:`TargetError`
    when the target can't make it, or for a calibration method the target does not offer."""
    precision = options.precision or profile.precision
    method = options.calibration_method
    if method is not None and method not in target.calibration_methods:
        offers = ", ".join(target.calibration_methods) or "no choice of calibration method"
        raise TargetError(f"target {target.name} can't calibrate with {method} (it offers {offers})")
    if precision == AUTO:
        if not any(p in target.precisions for p in LADDER):
            raise TargetError(f"target {target.name} makes none of {', '.join(LADDER)}")
        return precision
    if precision not in target.precisions:
        makes = ", ".join(target.precisions)
        raise TargetError(f"target {target.name} can't produce precision {precision!r} (it makes {makes})")
    return precision


def _read(path: Path | None, inputs: tuple[TensorSpec, ...], what: str, say: Progress) -> SampleSet | None:
    if path is None:
        return None
    samples = load_samples(Path(path), inputs, what)
    say(f"{what}: {len(samples)} samples from {path}")
    return samples


@dataclass(frozen=True)
class _Request:
    """Everything decided before a file is written: the checked model, where it goes, which
    samples calibrate and validate, and the options."""

    source: Path
    source_sha: str
    model: onnx.ModelProto
    profile: DeviceProfile
    target: Target
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    plan: SamplePlan
    opts: CompileOptions
    say: Progress
    model_path: Path | None = None  # the normalised model the target converts (default: source)
    intake: Intake | None = None
    reference: Path | None = None  # the FP32 model validation compares with (default: source)
    cache: dict[str, Any] = field(default_factory=dict, compare=False)  # the FP32 reference outputs
    scratch: Path | None = None  # the compile's work folder: targets keep what later attempts reuse

    def job(self, precision: str | None = None, extra: dict[str, Any] | None = None) -> CompileJob:
        cal = self.plan.calibration
        return CompileJob(
            source_path=self.model_path or self.source,
            profile=self.profile,
            precision=precision or self.precision,
            calibration=None if cal is None else cal.inputs,
            inputs=self.inputs,
            outputs=self.outputs,
            options={
                "max_batch": self.opts.max_batch,
                "threads": self.opts.threads,
                **({} if self.scratch is None else {"scratch_dir": str(self.scratch)}),
                **(extra or {}),
            },
            progress=self.say,
        )


@dataclass(frozen=True)
class _Checked:
    """What validation found."""

    comparison: Comparison
    compiled_outputs: dict[str, np.ndarray]
    ran: bool
    checked_with: str | None
    latency_ms: float | None
    fp32_latency_ms: float | None
    int8_latency_ms: float | None = None  # the all-INT8 attempt's, beside a mixed bundle
    not_run: str | None = None  # why the bundle's own runtime did not run it here


def _build(req: _Request, tries: _Tries, out_dir: Path) -> CompileReport:
    found = _search(req, tries)
    a, checked = found.attempt, found.attempt.checked
    if checked.latency_ms is None:
        checked = _measure(req, a, found.int8_base)
    precision = a.precision
    staging, out, files = a.staging, a.out, a.files
    size = a.size
    memory = estimate_memory(req.model, size, req.target.runtime)
    fit = check_fit(req.profile, memory, checked.latency_ms, _latency_unmeasurable(req, checked))
    notes = (*req.plan.notes, *out.notes, *found.notes, *_host_notes(req, checked, precision))

    selftest = None
    if req.opts.samples > 0:
        cls = checked.comparison.classifier_output
        expected = checked.compiled_outputs
        selftest = write_selftest(staging, req.plan.validation.inputs, expected, req.opts.samples, cls)
        files = (*files, *file_entries(staging, {selftest.file: "samples"}))
    mixed = _mixed_record(req, a, found, checked)
    if mixed is not None:
        notes = (*notes, _mixed_cost(mixed, size, checked.latency_ms))
    validation = _validation_record(req, checked, size, notes, a, mixed, found.choice)
    build = {**out.build, "source": model_info(req.model), "preflight": fit.to_dict(), "host": _host()}
    if found.log:
        build["attempts"] = list(found.log)
    req.say(f"writing the bundle to {out_dir}")
    manifest = write_manifest(staging, _manifest(req, out, files, validation, selftest, build, precision))
    publish(staging, out_dir, req.opts.force)
    tries.published(staging)
    return _report(req, out_dir, manifest, validation, checked, fit)


# -- trying precisions, calibration methods and float layers --------------------------------------

AUTO = "auto"
LADDER = ("int8", "fp16", "fp32")  # cheapest first


class _Tries:
    """The staging directories of every attempt; all but the published one are removed."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir, self.dirs = out_dir, []  # type: ignore[var-annotated]

    def new(self) -> Path:
        path = make_staging(self.out_dir)
        self.dirs.append(path)
        return path

    def drop(self, path: Path) -> None:
        discard(path)
        if path in self.dirs:
            self.dirs.remove(path)

    def published(self, path: Path) -> None:
        if path in self.dirs:
            self.dirs.remove(path)

    def discard_all(self) -> None:
        for path in self.dirs:
            discard(path)
        self.dirs = []


@dataclass(frozen=True)
class _Attempt:
    precision: str
    staging: Path
    out: TargetOutput
    files: tuple[FileEntry, ...]
    checked: _Checked
    calibration_method: str | None
    float_nodes: tuple[str, ...]
    failure: str | None  # why the gate refuses it; None when it passes

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files if f.role == "model")

    def label(self) -> str:
        how = f" ({self.calibration_method})" if self.calibration_method else ""
        kept = f" with {len(self.float_nodes)} layer(s) in float" if self.float_nodes else ""
        return f"{self.precision}{how}{kept}"


@dataclass(frozen=True)
class _Found:
    attempt: _Attempt
    log: tuple[str, ...] = ()  # every attempt that was refused, and why
    notes: tuple[str, ...] = ()
    int8_base: _Attempt | None = None  # the all-INT8 attempt a mixed bundle replaces
    ranked: int = 0
    mixed_attempts: int = 0
    choice: str | None = None
    ranked_by: str | None = None  # how the float layers were chosen, where not the target's ranking


def _attempt(req: _Request, tries: _Tries, precision: str, extra: dict[str, Any] | None = None) -> _Attempt:
    staging = tries.new()
    extra = dict(extra or {})
    req.say(f"compiling for {req.target.name} ({precision})")
    out = _run_target(req.target, req.job(precision, extra), staging)
    files = file_entries(staging, out.files)
    checked = _validate(req, staging, _manifest(req, out, files, precision=precision), out)
    floats = tuple(out.build.get("float_nodes", extra.get("float_nodes", ())))
    return _Attempt(
        precision,
        staging,
        out,
        files,
        checked,
        extra.get("calibration_method") if precision == "int8" else None,
        floats,
        gate_failure(checked.comparison, req.opts.min_agreement),
    )


def _search(req: _Request, tries: _Tries) -> _Found:
    """The bundle to ship: for a fixed precision, its attempt (for INT8, trying calibration
    methods, then layers in float); for ``auto``, the first of INT8, mixed, FP16, FP32 that passes
    the gate and, where this host runs the target's runtime, is not slower than FP32.
    Raises :class:`ValidationGateError` with the figures of the last refusal."""
    auto = req.precision == AUTO
    ladder = [p for p in LADDER if p in req.target.precisions] if auto else [req.precision]
    log = _Log()
    errors: list[CompileError] = []
    for precision in ladder:
        try:
            if precision == "int8":
                found = _int8(req, tries, log, skip_uncalibrated=auto)
            else:
                a = _attempt(req, tries, precision)
                found = _Found(a) if a.failure is None else None
                if a.failure is not None:
                    _refused(log, a)
                    tries.drop(a.staging)
        except (ToolchainError, TargetError, CalibrationError) as exc:
            # auto: a precision the toolchain can't make for this model (ONNX Runtime's quantizer
            # failing on it, a converter that can't calibrate an integer input) is one more
            # refusal, and the next precision is tried. An op no precision can take
            # (UnsupportedOpError) and a bad model (ModelError) still end the compile.
            if not auto:
                raise
            log.append(f"{precision}: {exc}")
            errors.append(exc)
            continue
        if found is None:
            continue
        a = found.attempt
        if auto and precision != "fp32" and a.checked.ran and req.opts.latency_runs > 0:
            a = replace(a, checked=_measure(req, a, found.int8_base))  # timed once, kept
            slower = _slower_than_fp32(a.checked)
            if slower is not None:
                log.append(f"{a.label()}: passed the gate but {slower}")
                tries.drop(a.staging)
                continue
        choice = None
        if auto:
            why = "; ".join(log) if log else "it passed the gate"
            choice = f"auto chose {a.label()}: the cheapest precision that passed the gate" + (
                f" (refused: {why})" if log else ""
            )
        return replace(found, attempt=a, log=tuple(log), choice=choice)
    if log.last_failure is None and errors:  # nothing was refused by the gate: the toolchain was
        raise type(errors[-1])(f"no precision could be made: {'; '.join(log)}") from errors[-1]
    last = log.last_failure or (log[-1].partition(": ")[2] if log else "no precision to try")
    knob = "--min-agreement" if last.startswith(("top-1", "exact")) else "--metric-threshold"
    tried = f" (tried {'; '.join(x.partition(':')[0] for x in log)})" if len(log) > 1 else ""
    raise ValidationGateError(f"{last}{tried}; refusing to emit a degraded model (lower {knob} to accept)")


class _Log(list[str]):
    """Every refused attempt as ``label: reason``; ``last_failure`` is the last gate failure,
    which the error quotes when nothing passes."""

    last_failure: str | None = None


def _refused(log: _Log, a: _Attempt) -> None:
    assert a.failure is not None
    log.append(f"{a.label()}: {a.failure}")
    log.last_failure = a.failure


def _methods(req: _Request) -> list[str | None]:
    if req.opts.calibration_method == DYNAMIC:  # needs no calibration data
        return [DYNAMIC]
    if req.plan.calibration is None or not req.target.calibration_methods:
        return [None]
    if req.opts.calibration_method is not None:
        return [req.opts.calibration_method]
    return [m for m in req.target.calibration_methods if m != DYNAMIC]  # Dynamic: after mixed


def _shortfall(a: _Attempt) -> float:
    """How far an attempt's failed outputs are from their thresholds, relative (smaller: closer)."""
    return sum(abs(s.value - s.threshold) / max(abs(s.threshold), 1e-9) for s in a.checked.comparison.failed)


def _int8(req: _Request, tries: _Tries, log: _Log, skip_uncalibrated: bool) -> _Found | None:
    """INT8 with each calibration method in turn, then the best of them with its costliest
    layers kept in float, then (where the target offers it) dynamic INT8 of the layers it takes;
    ``None`` when nothing passed (the refusals are in ``log``)."""
    refused: list[_Attempt] = []
    for i, method in enumerate(_methods(req)):
        extra = {"calibration_method": method} if method else {}
        try:
            a = _attempt(req, tries, "int8", extra)
        except CalibrationError as exc:
            if not skip_uncalibrated:
                raise
            log.append(f"int8: {exc}")
            return _dynamic(req, tries, str(exc), log) if _offers_dynamic(req) else None  # calibrates nothing
        except (ToolchainError, TargetError) as exc:
            if i > 0 and isinstance(exc, ToolchainError):
                log.append(f"int8 ({method}): {exc}")
                continue
            if i > 0 or not _offers_dynamic(req):
                raise
            # Static INT8 can't be made here (integer inputs on TFLite, a quantizer that fails on
            # the graph): dynamic INT8 calibrates nothing and may.
            log.append(f"int8 ({method}): {exc}" if method else f"int8: {exc}")
            found = _dynamic(req, tries, str(exc), log)
            if found is None and not skip_uncalibrated:
                raise
            return found
        if a.failure is None:
            for r in refused:
                tries.drop(r.staging)
            return _Found(a)
        _refused(log, a)
        refused.append(a)
    if not refused:
        return None
    best = min(refused, key=_shortfall)
    for r in refused:
        if r is not best:
            tries.drop(r.staging)
    found = _mixed(req, tries, best, log) if req.opts.mixed and best.calibration_method != DYNAMIC else None
    if found is None:
        tries.drop(best.staging)
        if _offers_dynamic(req):
            found = _dynamic(req, tries, best.failure or "", log)
    elif _offers_dynamic(req):
        found = _smaller(found, _dynamic(req, tries, best.failure or "", log), tries, log)
    return found


def _smaller(mixed_found: _Found, dynamic: _Found | None, tries: _Tries, log: _Log) -> _Found:
    """Of a mixed-precision bundle and a dynamic INT8 one that both passed, the smaller (the mixed
    one on a tie): a mixed bundle that needed many layers in float can hold more weights in float
    than dynamic INT8 of the matrix products does (MiniLM on x86: 50 layers in float, 0.42x the
    size, against 0.25x dynamic)."""
    if dynamic is None:
        return mixed_found
    keep, drop = (
        (dynamic, mixed_found) if dynamic.attempt.size < mixed_found.attempt.size else (mixed_found, dynamic)
    )
    log.append(
        f"{drop.attempt.label()} also passed but is larger ({drop.attempt.size:,} B against "
        f"{keep.attempt.size:,} B): not shipped"
    )
    tries.drop(drop.attempt.staging)
    return keep


# Dynamic INT8 that leaves the bundle above this share of FP32's size quantized too little to ship
# (the convolutions it leaves in float hold the weights).
DYNAMIC_MAX_SIZE = 0.9


def _offers_dynamic(req: _Request) -> bool:
    """Whether dynamic INT8 is the fallback here: the target offers it, the caller chose no
    calibration method, and did not turn mixed precision off."""
    offered = DYNAMIC in req.target.calibration_methods
    return offered and req.opts.calibration_method is None and req.opts.mixed


def _dynamic(req: _Request, tries: _Tries, why: str, log: _Log) -> _Found | None:
    """Dynamic INT8 (int8 weights, activations quantized on each run) after static INT8 failed
    (``why``) and mixed precision with it: static ranges fail where activations' ranges move from
    sample to sample (token states, recurrent state), which nothing ranked by layer rescues.
    ``None`` when it finds nothing to quantize, can't be made, or fails its gate."""
    req.say("static INT8 failed: trying dynamic INT8 (int8 weights, activations quantized on each run)")
    try:
        a = _attempt(req, tries, "int8", {"calibration_method": DYNAMIC})
    except (TargetError, ToolchainError) as exc:
        log.append(f"int8 ({DYNAMIC}): {exc}")
        return None
    if a.failure is not None:
        _refused(log, a)
        tries.drop(a.staging)
        return None
    # The same model in float, as this target writes it (a file's overhead is no saving).
    fp32 = int(a.out.build.get("fp32_size_bytes") or a.out.build.get("fp32_tflite_size_bytes") or 0)
    if fp32 and a.size > DYNAMIC_MAX_SIZE * fp32:
        # A CNN whose only matrix product is its classifier: "INT8" in name, FP32 in cost.
        log.append(
            f"{a.label()}: leaves most weights in float ({a.size / fp32:.2f}x the float model's size), "
            "not worth shipping as INT8"
        )
        tries.drop(a.staging)
        return None
    kept = f"; {len(a.float_nodes)} layer(s) with weights kept in float" if a.float_nodes else ""
    note = f"dynamic INT8 after static INT8 failed ({why}){kept}"
    return _Found(a, notes=(note,), ranked=int(a.out.build.get("weighted_layers", 0)), mixed_attempts=1)


_SEARCHED = "chosen one by one at the outputs"


def _mixed(req: _Request, tries: _Tries, base: _Attempt, log: _Log) -> _Found | None:
    """The failed INT8 ``base`` again with some layers in float, within ``mixed_attempts`` tries
    and ``mixed_max_share`` of the layers (the allowance).

    Up to four orders are tried, each first with :data:`FIRST_REACH` of the allowance: where the
    graph joins tensors of unlike ranges (a detector head's boxes and scores,
    :func:`compilers.mixed.joined_layers`), those joins and what follows them (whole, as long as
    they fit the allowance); where the graph is small enough (:data:`~compilers.mixed.SEARCH_POOL`)
    and the target can score a layer in float without a new compile, the layers chosen one by
    one by their effect at the outputs (:meth:`Target.search_layers`, computed when its turn
    comes); the costliest layers by quantization noise; then layers from both ends of the graph
    (:func:`compilers.mixed.from_the_ends`). When an order's share fails, fewer of its layers are
    not tried (they rarely pass where more did not, and each try is a full quantization and
    validation) and the next order is tried. When none passes, the order that came closest to its
    gate is tried once more with the whole allowance. Whichever passes is bisected towards the
    fewest layers that still pass, with the tries left, and the fewest that passed ship."""
    extra: dict[str, Any] = {"calibration_method": base.calibration_method} if base.calibration_method else {}
    req.say("INT8 failed its gate: ranking layers by quantization error against FP32")
    ranked = req.target.layer_costs(req.job("int8", extra), base.staging)
    if not ranked:
        log.append(f"mixed precision: target {req.target.name} can't keep layers in float here")
        return None
    share, left = req.opts.mixed_max_share, req.opts.mixed_attempts
    cap = allowance(len(ranked), share, len(ranked))
    first = allowance(len(ranked), share * FIRST_REACH, len(ranked))
    if cap == 0:
        return None
    orders: list[tuple[str, list[LayerCost]]] = [("costliest first", list(ranked))]
    if len(ranked) <= SEARCH_POOL:
        orders.insert(0, (_SEARCHED, []))  # filled when its turn comes: the search costs time
    ends = from_the_ends(ranked)
    if ends and {c.node for c in ends[:first]} != {c.node for c in ranked[:first]}:
        orders.append(("from both ends of the graph", ends))
    joined = joined_layers(ranked, cap)  # tried whole: a join cut short keeps its harm
    if joined:
        orders.insert(0, ("joins of tensors of unlike ranges and what follows them", joined))

    def attempt(order: list[LayerCost], how: str, k: int) -> _Attempt:
        nodes = [c.node for c in order[:k]]
        req.say(
            f"mixed precision: keeping {k} of {len(ranked)} layer(s) in float, {how} "
            f"({', '.join(nodes[:4])}...)"
        )
        return _attempt(req, tries, "int8", {**extra, "float_nodes": tuple(nodes)})

    used = 0

    def fewest(best: _Attempt, order: list[LayerCost], how: str, lo: int, hi: int) -> _Found:
        """Bisect between ``lo`` layers (known to fail, or 0) and ``hi`` (``best``, passed)."""
        nonlocal used
        while used < left and hi - lo > 1:
            mid = (lo + hi) // 2
            a = attempt(order, how, mid)
            used += 1
            if a.failure is None:
                tries.drop(best.staging)
                best, hi = a, mid
            else:
                _refused(log, a)
                tries.drop(a.staging)
                lo = mid
        note = (
            f"mixed precision: {len(best.float_nodes)} layer(s) kept in float ({how}) after plain INT8 "
            f"failed ({base.failure}): {', '.join(best.float_nodes)}"
        )
        by = SEARCHED_BY if how.startswith(_SEARCHED) else None
        return _Found(
            best, notes=(note,), int8_base=base, ranked=len(ranked), mixed_attempts=used, ranked_by=by
        )

    closest: tuple[float, list[LayerCost], str, int] | None = None
    for how, order in orders:
        if used >= left:
            break
        if how == _SEARCHED:
            try:
                order = list(req.target.search_layers(req.job("int8", extra), base.staging, ranked, cap))
            except CompileError as exc:  # the other orders don't need it
                log.append(f"mixed precision: {exc}")
                continue
            if not order:
                continue
        # a join cut short keeps its harm; the search chose its own count
        whole = len(order) if order is joined or how == _SEARCHED else min(first, len(order))
        a = attempt(order, how, whole)
        used += 1
        if a.failure is None:
            return fewest(a, order, how, 0, whole)
        _refused(log, a)
        tries.drop(a.staging)
        req.say(f"mixed precision: {whole} layer(s) in float, {how}, did not pass")
        near = gate_nearness(a.checked.comparison.scores)
        if min(cap, len(order)) > whole and (closest is None or near > closest[0]):
            closest = (near, order, how, whole)
    if closest is None or used >= left:
        return None
    _, order, how, tried = closest
    whole = min(cap, len(order))
    how = f"{how}, the whole allowance"
    a = attempt(order, how, whole)
    used += 1
    if a.failure is None:
        return fewest(a, order, how, tried, whole)
    _refused(log, a)
    tries.drop(a.staging)
    req.say(f"mixed precision: {whole} layer(s) in float ({how}) did not pass")
    return None


# Within this share of FP32's time a bundle is not measurably slower: medians of alternating
# runs still move by a percent or two between attempts on a shared host (the same FP16 bundle read
# 1.00x on one profile and 1.01x on the next), and a coin flip must not cost half the size.
LATENCY_NOISE = 0.03


def _slower_than_fp32(checked: _Checked) -> str | None:
    """Why a bundle must not ship under ``auto``: measured slower than FP32 on this host with the
    target's own runtime, by more than :data:`LATENCY_NOISE`; ``None`` when it is not, or was not
    measured (pure)."""
    if checked.latency_ms is None or not checked.fp32_latency_ms:
        return None
    ratio = checked.latency_ms / checked.fp32_latency_ms
    if ratio <= 1.0 + LATENCY_NOISE:
        return None
    ms = f"{checked.latency_ms:.3f} vs {checked.fp32_latency_ms:.3f} ms"
    return f"ran {ratio:.2f}x slower than FP32 on this host ({ms})"


def _measure(req: _Request, a: _Attempt, base: _Attempt | None) -> _Checked:
    """``a``'s figures with latency against FP32 (and the all-INT8 ``base``'s, for the cost of
    mixed precision) when its runtime runs here."""
    opts = req.opts
    if not a.checked.ran or opts.latency_runs == 0:
        return a.checked
    req.say(f"timing {opts.latency_runs} single-sample runs of FP32 and {a.label()}")
    fp32 = source_adapter(req.reference or req.source, req.inputs, req.outputs, opts.threads)
    adapters = [fp32]
    try:
        run = compiled_adapter(
            a.staging,
            _manifest(req, a.out, a.files, precision=a.precision),
            a.out.runnable_here,
            a.out.stand_in,
            opts.threads,
            a.out.int8_in_float,
        )
        adapters.append(run.adapter)
        if base is not None and base.checked.ran:
            other = compiled_adapter(
                base.staging,
                _manifest(req, base.out, base.files, precision="int8"),
                base.out.runnable_here,
                base.out.stand_in,
                opts.threads,
                base.out.int8_in_float,
            )
            adapters.append(other.adapter)
        with _as_toolchain_error("timing the compiled model failed"):
            if len(adapters) == 2:
                a0, a1 = adapters
                times = list(measure_latency(a0, a1, req.plan.validation, req.inputs, opts.latency_runs))
            else:
                times = measure_latencies(adapters, req.plan.validation, req.inputs, opts.latency_runs)
    finally:
        for ad in adapters:
            ad.close()
    return replace(
        a.checked,
        fp32_latency_ms=times[0],
        latency_ms=times[1],
        int8_latency_ms=times[2] if len(times) > 2 else None,
    )


def _mixed_cost(m: MixedPrecision, size: int, latency_ms: float | None) -> str:
    """What keeping layers in float cost against the all-INT8 bundle, in one sentence (pure)."""
    line = f"mixed precision cost: {size} B against {m.int8_size_bytes} B all-INT8"
    if m.int8_size_bytes:
        line += f" ({size / m.int8_size_bytes:.2f}x)"
    if latency_ms is not None and m.int8_latency_ms:
        ratio = latency_ms / m.int8_latency_ms
        line += f"; {latency_ms:.3f} ms against {m.int8_latency_ms:.3f} ms ({ratio:.2f}x)"
    else:
        line += "; latency not measured on this host"
    return line


def _mixed_record(req: _Request, a: _Attempt, found: _Found, checked: _Checked) -> MixedPrecision | None:
    if not a.float_nodes:
        return None
    if a.calibration_method == DYNAMIC:  # the layers dynamic INT8 does not take, not a ranking
        return MixedPrecision(
            float_nodes=a.float_nodes,
            quantizable_nodes=found.ranked,
            attempts=found.mixed_attempts,
            ranked_by="not ranked: the layers with weights dynamic INT8 does not take (convolutions)",
        )
    if found.int8_base is None:
        return None
    return MixedPrecision(
        float_nodes=a.float_nodes,
        quantizable_nodes=found.ranked,
        attempts=found.mixed_attempts,
        ranked_by=found.ranked_by or req.target.layer_ranking,
        float_precision="fp16" if req.target.runtime == "tensorrt" else "fp32",
        int8_size_bytes=found.int8_base.size,
        int8_latency_ms=checked.int8_latency_ms,
    )


def _run_target(target: Target, job: CompileJob, staging: Path) -> TargetOutput:
    try:
        return target.compile(job, staging)
    except CompileError:
        raise
    except Exception as exc:  # a converter's own exception: translated once, here
        raise ToolchainError(f"target {target.name} failed: {type(exc).__name__}: {one_line(exc)}") from exc


def _validate(req: _Request, staging: Path, draft: Manifest, out: TargetOutput) -> _Checked:
    samples, opts = req.plan.validation, req.opts
    req.say(f"validating against FP32 on {len(samples)} samples")
    reference = _reference(req)
    run = compiled_adapter(staging, draft, out.runnable_here, out.stand_in, opts.threads, out.int8_in_float)
    try:
        with _as_toolchain_error("the compiled model failed on the validation samples"):
            got = run_all(run.adapter, samples, req.inputs)
    finally:
        run.adapter.close()
    pooled = req.cache.get("pooled")
    if pooled is None:
        pooled = req.cache["pooled"] = pooled_outputs(req.model)
    comparison = compare(
        reference,
        got,
        req.outputs,
        samples.labels,
        opts.min_agreement,
        opts.metric,
        opts.metric_threshold,
        pooled,
    )
    return _Checked(
        comparison=comparison,
        compiled_outputs=got,
        ran=run.ran,
        checked_with=run.checked_with,
        latency_ms=None,
        fp32_latency_ms=None,
        not_run=run.not_run,
    )


def _reference(req: _Request) -> dict[str, np.ndarray]:
    """The FP32 source's outputs on the validation samples, run once per compile."""
    cached = req.cache.get("reference")
    if cached is not None:
        return cached
    try:
        fp32 = source_adapter(req.reference or req.source, req.inputs, req.outputs, req.opts.threads)
    except RuntimeLoadError as exc:
        raise ToolchainError(
            f"the FP32 source does not run under ONNX Runtime here: {one_line(exc)}"
        ) from exc
    try:
        reference = run_all(fp32, req.plan.validation, req.inputs)
    finally:
        fp32.close()
    req.cache["reference"] = reference
    return reference


@contextlib.contextmanager
def _as_toolchain_error(what: str) -> Iterator[None]:
    """The adapters' ``ValueError`` (a model that runs but fails on real inputs) as a one-line
    :class:`ToolchainError` saying ``what`` failed."""
    try:
        yield
    except ValueError as exc:
        raise ToolchainError(f"{what}: {one_line(exc)}") from exc


def _latency_unmeasurable(req: _Request, checked: _Checked) -> str | None:
    if req.opts.latency_runs == 0:
        return "latency not measured (latency_runs=0)"
    if not checked.ran and checked.not_run:
        return checked.not_run
    if not checked.ran:
        return "the bundle's runtime does not run on this host"
    if host_arch() != req.profile.cpu.arch:
        return f"this host is {host_arch()}, the device is {req.profile.cpu.arch}"
    return None


def _host_notes(req: _Request, checked: _Checked, precision: str) -> tuple[str, ...]:
    notes = []
    vnni = host_has_vnni()
    if checked.ran is False and checked.checked_with:
        notes.append(f"validated with a stand-in: {checked.checked_with}")
    if precision == "int8" and checked.latency_ms is not None and checked.fp32_latency_ms:
        ratio = checked.latency_ms / checked.fp32_latency_ms
        if ratio > 1.0:
            has = {True: "has", False: "has no", None: "may or may not have"}[vnni]
            notes.append(
                f"INT8 ran {ratio:.2f}x slower than FP32 on this build host, whose CPU {has} VNNI "
                "(avx512_vnni/avx_vnni); without VNNI INT8 kernels gain little on x86"
            )
        if vnni is False and req.profile.has_vnni:
            notes.append(
                f"this host has no VNNI but {req.profile.name} does: expect INT8 to do better on the device"
            )
    return tuple(notes)


def _validation_record(
    req: _Request,
    checked: _Checked,
    size: int,
    notes: tuple[str, ...],
    a: _Attempt,
    mixed: MixedPrecision | None,
    choice: str | None,
) -> Validation:
    c = checked.comparison
    return Validation(
        samples=c.samples,
        top1_agreement=c.top1_agreement,
        max_abs_error=c.max_abs_error,
        mean_abs_error=c.mean_abs_error,
        size_bytes=size,
        fp32_size_bytes=req.source.stat().st_size,
        latency_ms=checked.latency_ms,
        fp32_latency_ms=checked.fp32_latency_ms,
        ran=checked.ran,
        checked_with=checked.checked_with,
        min_agreement=req.opts.min_agreement if c.top1_agreement is not None else None,
        accuracy=c.accuracy,
        fp32_accuracy=c.fp32_accuracy,
        notes=notes,
        metrics=tuple(
            OutputMetric(s.output, s.metric, _finite(s.value), s.threshold, s.passed, s.higher_is_better)
            for s in c.scores
        ),
        calibration_method=a.calibration_method,
        mixed=mixed,
        precision_choice=choice,
    )


def _finite(x: float) -> float:
    """JSON has no infinity: an exact match's SQNR is written as 999 dB."""
    return x if np.isfinite(x) else float(np.sign(x) * 999.0)


def _host() -> dict[str, Any]:
    return {"arch": host_arch(), "vnni": host_has_vnni()}


def compiler_version() -> str:
    """The installed edgefleet's version (the agent's when run from an uninstalled tree)."""
    try:
        return package_version("edgefleet")
    except PackageNotFoundError:
        import agent  # the package's own version string only, not its modules

        return agent.__version__


def _manifest(
    req: _Request,
    out: TargetOutput,
    files: tuple[FileEntry, ...],
    validation: Validation | None = None,
    selftest: SelfTest | None = None,
    build: dict[str, Any] | None = None,
    precision: str | None = None,
) -> Manifest:
    return Manifest(
        target=req.target.name,
        precision=precision or req.precision,
        runtime=req.target.runtime,
        runtime_version=out.runtime_version,
        entrypoint=out.entrypoint,
        source_sha256=req.source_sha,
        inputs=out.inputs,
        outputs=out.outputs,
        files=files,
        validation=validation,
        selftest=selftest,
        source_file=req.source.name,
        profile=req.profile.name,
        name=req.opts.name,
        version=req.opts.version,
        build=build if build is not None else dict(out.build),
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        compiler_version=compiler_version(),
        intake=req.intake,
    )


def _report(
    req: _Request, out_dir: Path, manifest: Manifest, v: Validation, checked: _Checked, fit: FitResult
) -> CompileReport:
    return CompileReport(
        profile=req.profile.name,
        target=req.target.name,
        precision=manifest.precision,
        out_dir=out_dir,
        manifest=manifest,
        size_bytes=v.size_bytes,
        fp32_size_bytes=v.fp32_size_bytes,
        validation_samples=v.samples,
        top1_agreement=v.top1_agreement,
        max_abs_error=v.max_abs_error,
        mean_abs_error=v.mean_abs_error,
        accuracy=v.accuracy,
        fp32_accuracy=v.fp32_accuracy,
        latency_ms=v.latency_ms,
        fp32_latency_ms=v.fp32_latency_ms,
        checked_with=v.checked_with,
        host_vnni=host_has_vnni(),
        fit=fit,
        notes=v.notes,
        intake_steps=() if req.intake is None else req.intake.steps,
        strategy=manifest.build.get("strategy"),
        metrics=v.metrics,
        calibration_method=v.calibration_method,
        mixed=v.mixed,
        precision_choice=v.precision_choice,
        attempts=tuple(manifest.build.get("attempts", ())),
    )
