"""Validation against FP32: run the source model and the compiled bundle on held-out samples,
compare, time, and gate.

The compiled bundle runs through :func:`agent.runtimes.load_bundle`, the same adapter code the
device uses. When its runtime can't run here (TensorRT without a GPU), the target's stand-in file
runs under ONNX Runtime instead and the figures say so (``checked_with``); a stand-in is not the
device's runtime, so no latency is recorded for it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agent.contracts.manifest import Manifest, TensorSpec
from agent.runtimes import (
    RuntimeAdapter,
    RuntimeLoadError,
    RuntimeUnavailable,
    load_bundle,
    load_onnx,
    runtime_version,
    samples_first,
)
from compilers.batching import DEFAULT_BATCH, iter_batches, run_batch, usable_rows
from compilers.calibration import SampleSet, random_samples, split_holdout
from compilers.errors import CalibrationError, ToolchainError, ValidationGateError
from compilers.metrics import EXACT, TOP1, OutputScore, choose_metric, score_outputs, shown
from compilers.modelcheck import one_line

RANDOM_SAMPLES = 64
HOLDOUT_FRACTION = 0.2
MIN_SPLIT = 5  # below this many calibration rows, holding 20% out would leave too few to calibrate
# Q/DQ pairs computed as float math (what TensorRT's INT8 kernels compute), not fused into ONNX
# Runtime's x86 INT8 kernels.
STAND_IN_OPTIMIZATION = "ORT_ENABLE_BASIC"


@dataclass(frozen=True)
class SamplePlan:
    calibration: SampleSet | None
    validation: SampleSet
    notes: tuple[str, ...] = ()


def plan_samples(
    calibration: SampleSet | None,
    validation: SampleSet | None,
    inputs: tuple[TensorSpec, ...],
    limit: int,
    seed: int = 0,
) -> SamplePlan:
    """Decide which samples calibrate and which validate.

    The validation file when given; else the last 20% of the calibration data, held out of
    calibration; else :data:`RANDOM_SAMPLES` random inputs, with a note saying the figures mean
    little. At most ``limit`` validation samples are used (a multiple of a fixed batch size).
    Raises :class:`CalibrationError` when a fixed-batch model gets fewer samples than one batch.
    """
    notes: list[str] = []
    if validation is None and calibration is not None and len(calibration) >= MIN_SPLIT:
        calibration, validation = split_holdout(calibration, HOLDOUT_FRACTION)
        notes.append(
            f"no validation data: validated on the last {len(validation)} calibration samples, "
            "held out of calibration"
        )
    if validation is None:
        validation = random_samples(inputs, RANDOM_SAMPLES, seed)
        notes.append(
            f"no validation data: validated on {RANDOM_SAMPLES} random inputs, so agreement says "
            "little about real data; give --validation"
        )
    keep = usable_rows(min(limit, len(validation)), inputs, validation.inputs)
    if keep == 0:
        raise CalibrationError(
            f"validation needs at least {run_batch(inputs, samples=validation.inputs)} samples for this "
            "fixed-batch model"
        )
    if keep < len(validation):
        notes.append(f"validated on the first {keep} of {len(validation)} validation samples")
        labels = None if validation.labels is None else validation.labels[:keep]
        validation = SampleSet(validation.rows(0, keep), labels, validation.origin)
    return SamplePlan(calibration, validation, tuple(notes))


@dataclass(frozen=True)
class Comparison:
    """How the compiled outputs compare with FP32's (pure figures). ``scores`` holds every
    output's gate figure (:mod:`compilers.metrics`); ``top1_agreement`` is the first class-score
    output's, kept for the summary and the self-test."""

    samples: int
    top1_agreement: float | None
    max_abs_error: float
    mean_abs_error: float
    accuracy: float | None
    fp32_accuracy: float | None
    classifier_output: str | None
    scores: tuple[OutputScore, ...] = ()

    @property
    def failed(self) -> tuple[OutputScore, ...]:
        return tuple(s for s in self.scores if not s.passed)


def classifier_output(
    outputs: dict[str, np.ndarray], specs: tuple[TensorSpec, ...], pooled: frozenset[str] = frozenset()
) -> str | None:
    """The first output shaped like class scores ``[N, C]`` with ``C > 1``, else ``None``."""
    for spec in specs:
        arr = outputs[spec.name]
        if (
            arr.ndim == 2
            and arr.shape[1] > 1
            and choose_metric(spec.name, arr, spec.name in pooled)[0] == TOP1
        ):
            return spec.name
    return None


def compare(
    reference: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    specs: tuple[TensorSpec, ...],
    labels: np.ndarray | None,
    min_agreement: float = 0.99,
    metric: str | None = None,
    threshold: float | None = None,
    pooled: frozenset[str] = frozenset(),
) -> Comparison:
    """Every output scored against FP32 (:func:`compilers.metrics.score_outputs`), top-1
    agreement of the first class-score output, max/mean absolute error over every output element,
    and accuracy against ``labels`` when given. Raises :class:`CompileError` when ``metric``
    can't score an output."""
    errors = [
        np.abs(got[s.name].astype(np.float64) - reference[s.name].astype(np.float64)).ravel() for s in specs
    ]
    err = np.concatenate(errors) if errors else np.zeros(1)
    cls = classifier_output(reference, specs, pooled)
    n = len(next(iter(reference.values())))
    agreement = accuracy = fp32_accuracy = None
    if cls is not None:
        ref_top, got_top = reference[cls].argmax(axis=1), got[cls].argmax(axis=1)
        agreement = float(np.mean(ref_top == got_top))
        if labels is not None and labels.ndim == 1 and len(labels) == n:
            accuracy = float(np.mean(got_top == labels))
            fp32_accuracy = float(np.mean(ref_top == labels))
    scores = score_outputs(reference, got, [s.name for s in specs], min_agreement, metric, threshold, pooled)
    return Comparison(
        samples=n,
        top1_agreement=agreement,
        max_abs_error=float(err.max()) if err.size else 0.0,
        mean_abs_error=float(err.mean()) if err.size else 0.0,
        accuracy=accuracy,
        fp32_accuracy=fp32_accuracy,
        classifier_output=cls,
        scores=scores,
    )


def gate_failure(cmp: Comparison, min_agreement: float) -> str | None:
    """Why ``cmp`` fails its gate (one line with the figures), or ``None`` when it passes (pure).

    With per-output ``scores`` every output must meet its threshold; a comparison without them
    (built by hand) gates on top-1 agreement against ``min_agreement``, outputs that are not
    class scores passing."""
    if cmp.scores:
        bad = cmp.failed
        if not bad:
            return None
        first = bad[0]
        more = f"; {len(bad) - 1} more output(s) failed" if len(bad) > 1 else ""
        where = f" for output {first.output!r}" if first.output != "*" else ""
        return (
            f"{first.describe()} on {cmp.samples} samples{where} (max abs error "
            f"{cmp.max_abs_error:.4g}){more}"
        )
    if cmp.top1_agreement is not None and cmp.top1_agreement < min_agreement:
        agreement = shown(cmp.top1_agreement, min_agreement)
        return (
            f"top-1 agreement {agreement} < {min_agreement:g} on {cmp.samples} samples "
            f"(max abs error {cmp.max_abs_error:.4g})"
        )
    return None


def gate(cmp: Comparison, min_agreement: float) -> None:
    """Raise :class:`ValidationGateError` with the figures when an output misses its threshold
    (:func:`gate_failure`)."""
    why = gate_failure(cmp, min_agreement)
    if why is None:
        return
    bad = cmp.failed
    knob = "--metric-threshold" if bad and bad[0].metric not in (TOP1, EXACT) else "--min-agreement"
    raise ValidationGateError(
        f"{why}; refusing to emit a degraded model (lower {knob} to accept, "
        "or --precision auto to keep sensitive layers in float)"
    )


def run_all(
    adapter: RuntimeAdapter, samples: SampleSet, specs: tuple[TensorSpec, ...]
) -> dict[str, np.ndarray]:
    """Every sample through ``adapter``, in batches the model takes; each output's runs joined
    with the samples on axis 0 (:func:`agent.runtimes.samples.samples_first`: a recurrent
    state's ``[layers, N, hidden]`` comes back as ``[N, layers, hidden]``)."""
    batch = run_batch(specs, DEFAULT_BATCH, samples.inputs)
    parts: dict[str, list[np.ndarray]] = {}
    rows: list[int] = []
    for feed in iter_batches(samples.inputs, batch, specs):
        rows.append(1 if batch == 1 else len(next(iter(feed.values()))))
        for name, value in adapter.infer(feed).items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {k: samples_first(v, rows) for k, v in parts.items()}


def source_adapter(
    source: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], threads: int | None
) -> RuntimeAdapter:
    """The FP32 source under ONNX Runtime, through the same adapter as the bundles (so latency
    figures carry the same per-call overhead)."""
    manifest = Manifest(
        target="onnx-x86",
        precision="fp32",
        runtime="onnxruntime",
        runtime_version="",
        entrypoint=source.name,
        source_sha256="",
        inputs=inputs,
        outputs=outputs,
        files=(),
    )
    return load_onnx(source.parent, manifest, threads=threads)


@dataclass(frozen=True)
class CompiledRun:
    adapter: RuntimeAdapter
    ran: bool  # the bundle's own runtime ran it
    checked_with: str | None
    not_run: str | None = None  # why not, when it did not


def compiled_adapter(
    staging: Path,
    manifest: Manifest,
    runnable_here: str | None,
    stand_in: str | None,
    threads: int | None,
    int8_in_float: str | None = None,
) -> CompiledRun:
    """Load the bundle with its own runtime, or its stand-in under ONNX Runtime; with
    ``int8_in_float`` (why this host's INT8 kernels differ from the device's), the bundle's own
    ONNX model with its Q/DQ computed as float math.

    Raises :class:`ToolchainError` when neither can run here or the runtime refuses the model.
    """
    reason = runnable_here
    if reason is None and int8_in_float is not None:
        how = "Q/DQ in float: the exact integer arithmetic of the device's kernels"
        return _qdq_in_float(staging, manifest, threads, "the compiled model", how, int8_in_float)
    if reason is None:
        try:
            return CompiledRun(load_bundle(staging, manifest, threads=threads), True, None)
        except RuntimeUnavailable as exc:
            reason = str(exc)
        except RuntimeLoadError as exc:
            raise ToolchainError(
                f"the compiled model does not load in {manifest.runtime}: {one_line(exc)}"
            ) from exc
    if stand_in is None:
        raise ToolchainError(
            f"can't validate the {manifest.target} bundle here: {reason}, and the target has no stand-in"
        )
    stand = replace(manifest, entrypoint=stand_in, runtime="onnxruntime")
    how = "Q/DQ in float, as TensorRT computes it"
    return _qdq_in_float(staging, stand, threads, f"the stand-in {stand_in}", how, reason)


def _qdq_in_float(
    staging: Path, manifest: Manifest, threads: int | None, what: str, how: str, reason: str
) -> CompiledRun:
    """``manifest``'s entrypoint under ONNX Runtime with Q/DQ computed as float math
    (:data:`STAND_IN_OPTIMIZATION`), not the bundle's own run: ``reason`` says why."""
    try:
        adapter = load_onnx(staging, manifest, threads=threads, optimization=STAND_IN_OPTIMIZATION)
    except RuntimeLoadError as exc:
        raise ToolchainError(f"{what} does not load in ONNX Runtime: {one_line(exc)}") from exc
    version = runtime_version("onnxruntime")
    checked_with = f"onnxruntime {version} on {manifest.entrypoint} ({how}); {reason}"
    return CompiledRun(adapter, False, checked_with, reason)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def measure_latency(
    fp32: RuntimeAdapter,
    compiled: RuntimeAdapter,
    samples: SampleSet,
    specs: tuple[TensorSpec, ...],
    runs: int,
) -> tuple[float, float]:
    """Median milliseconds of single-sample runs of ``fp32`` and ``compiled``
    (:func:`measure_latencies`)."""
    a, b = measure_latencies([fp32, compiled], samples, specs, runs)
    return a, b


def measure_latencies(
    adapters: list[RuntimeAdapter], samples: SampleSet, specs: tuple[TensorSpec, ...], runs: int
) -> list[float]:
    """Median milliseconds of single-sample runs (batch 1, or the model's fixed batch) of each
    adapter. Runs alternate between them so that load from other processes on the host hits all
    alike; a few warm-up runs are not counted."""
    batch = run_batch(specs, 1, samples.inputs)
    rows = max(batch, usable_rows(min(len(samples), 16 * batch), specs, samples.inputs))
    feeds = list(iter_batches(samples.rows(0, rows), batch, specs))
    times: list[list[float]] = [[] for _ in adapters]
    for i in range(runs + 3):
        feed = feeds[i % len(feeds)]
        for adapter, out in zip(adapters, times, strict=True):
            t = _timed(lambda f=feed, a=adapter: a.infer(f))  # type: ignore[misc]
            if i >= 3:
                out.append(t)
    return [statistics.median(t) for t in times]
