"""The corpus tier: every public model of :mod:`tests.corpus.catalog` for every target.

Each pair compiles with ``precision="auto"`` on the model's own calibration and validation data.
It must end in a bundle whose validation passed its gate, which this test then loads with the
agent's runtime adapters and scores against ONNX Runtime FP32 on the source model with its own
metrics; or in an :class:`~compilers.errors.UnsupportedOpError` naming the op type, the node and
the target. Across the corpus at most one pair may end unsupported (the last test).

    pytest tests/corpus -m corpus            # every pair: about 38 minutes on two cores
    pytest tests/corpus                      # the CI slice (IN_CI): about 6 minutes

The default run (CI) takes the 15 pairs of :data:`IN_CI`, which compile in under 100 seconds each
here: every target, seven of the eight models, the unsupported pair and bundles that mixed
precision rescued (the YOLOv8 head on x86 and TensorRT, Silero VAD on TensorRT) among them. The
rest (the PaddleOCR recogniser, MiniLM on TensorRT, whose search for layers to keep in float
takes its whole two minutes, the TFLite conversions of the larger models) take two to eight
minutes each, so the whole tier would more than double the suite's time; they run with
``-m corpus``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agent.contracts.manifest import Manifest
from agent.runtimes import RuntimeAdapter, RuntimeUnavailable, load_bundle, load_onnx, verify_bundle_dir
from compilers import CompileError, CompileOptions, CompileReport, UnsupportedOpError, compile_model
from tests.corpus.catalog import MODELS
from tests.corpus.conftest import CorpusFiles
from tests.corpus.outcomes import OUTCOMES, Outcome

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

TARGETS = {
    "onnx-x86": "x86-64-avx512-vnni",
    "tflite-arm": "raspberry-pi-4",
    "tensorrt-jetson": "jetson-orin-nano",
}
PAIRS = [(m.name, t) for m in MODELS for t in TARGETS]
# The pairs the default run (CI) compiles: about six minutes of compiling on two cores.
IN_CI = frozenset(
    {(m, t) for m in ("ppocr-cls", "silero-vad-v6", "logreg-iris") for t in TARGETS}
    | {("magika-v3", "tflite-arm"), ("nudenet-320n", "onnx-x86"), ("minilm-l3", "onnx-x86")}
    | {(m, "tensorrt-jetson") for m in ("nudenet-320n", "magika-v3", "ppocrv4-det")}
)
MAX_UNSUPPORTED = 1
SCORE_BATCH = 16
# The stand-in of a bundle whose runtime can't run here, computed as the compiler validated it.
STAND_IN_OPTIMIZATION = "ORT_ENABLE_BASIC"


# -- scoring, independent of the compiler's gate ---------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """How one output (or the ``channels`` slice of its axis 1) is scored against FP32, and the
    least score that passes."""

    kind: str  # top1 | steps | ctc | topk | cosine | decision | exact
    floor: float
    channels: tuple[int, int | None] | None = None
    k: int = 100

    @property
    def label(self) -> str:
        part = "" if self.channels is None else f"[{self.channels[0]}:{self.channels[1] or ''}]"
        return f"{self.kind}{part}"


# Per model, per output index: the metrics it is scored by (outputs not named here are scored by
# their dtype and shape, see metrics_for).
METRICS: dict[str, dict[int, tuple[Metric, ...]]] = {
    "ppocr-cls": {0: (Metric("top1", 0.97),)},
    "magika-v3": {0: (Metric("top1", 0.97),)},
    "ppocrv4-rec": {0: (Metric("steps", 0.95), Metric("ctc", 0.9))},
    "ppocrv4-det": {0: (Metric("cosine", 0.98), Metric("decision", 0.98))},
    # YOLOv8: rows 0-3 are boxes (cx, cy, w, h in pixels), rows 4- the per-class scores.
    "nudenet-320n": {0: (Metric("cosine", 0.99, (0, 4)), Metric("topk", 0.8, (4, None)))},
    "silero-vad-v6": {
        0: (Metric("decision", 0.95),),
        1: (Metric("cosine", 0.95),),
        2: (Metric("cosine", 0.95),),
    },
    "minilm-l3": {2: (Metric("cosine", 0.98),), 3: (Metric("cosine", 0.98),)},
    "logreg-iris": {0: (Metric("decision", 0.97),)},
}


def metrics_for(name: str, index: int, ref: np.ndarray) -> tuple[Metric, ...]:
    if index in METRICS.get(name, {}):
        return METRICS[name][index]
    if ref.dtype.kind in "iub":
        return (Metric("exact", 1.0),)
    if ref.ndim == 2 and ref.shape[1] > 1:
        return (Metric("top1", 0.97),)
    return (Metric("cosine", 0.98),)


def ctc_decode(steps: np.ndarray, blank: int = 0) -> tuple[int, ...]:
    """Greedy CTC: repeats collapsed, blanks dropped."""
    out, prev = [], -1
    for s in steps.tolist():
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return tuple(out)


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a = ref.reshape(len(ref), -1).astype(np.float64)
    b = got.reshape(len(got), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)
    return float(np.mean(cos))


def score(metric: Metric, ref: np.ndarray, got: np.ndarray) -> float:
    """The score of ``got`` against ``ref`` under ``metric`` (1.0 is a perfect match)."""
    if metric.channels is not None:
        lo, hi = metric.channels
        ref, got = ref[:, lo:hi], got[:, lo:hi]
    if metric.kind == "top1":
        return float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
    if metric.kind == "steps":  # per-step argmax of a sequence of class scores [N, T, C]
        return float(np.mean(ref.argmax(axis=-1) == got.argmax(axis=-1)))
    if metric.kind == "ctc":  # the decoded sequences are the same
        pairs = zip(ref.argmax(axis=-1), got.argmax(axis=-1), strict=True)
        return float(np.mean([ctc_decode(a) == ctc_decode(b) for a, b in pairs]))
    if metric.kind == "topk":  # the k strongest scores of each sample are found at the same places
        a = np.argsort(ref.reshape(len(ref), -1), axis=1)[:, -metric.k :]
        b = np.argsort(got.reshape(len(got), -1), axis=1)[:, -metric.k :]
        return float(np.mean([len(np.intersect1d(x, y)) / metric.k for x, y in zip(a, b, strict=True)]))
    if metric.kind == "decision":  # a probability (or a label) decided the same way
        if ref.dtype.kind in "iu":
            return float(np.mean(ref == got))
        return float(np.mean((ref.astype(np.float64) > 0.5) == (got.astype(np.float64) > 0.5)))
    if metric.kind == "exact":
        return float(np.mean(ref == got))
    return cosine(ref, got)


def batches(arrays: dict[str, np.ndarray], manifest: Manifest) -> Iterator[dict[str, np.ndarray]]:
    """The validation rows in batches every input takes (its fixed batch size, else SCORE_BATCH)."""
    fixed = {s.shape[0] for s in manifest.inputs if s.shape and s.shape[0] > 0}
    size = fixed.pop() if fixed else SCORE_BATCH
    n = len(next(iter(arrays.values())))
    for start in range(0, n - size + 1, size):
        yield {s.name: arrays[s.name][start : start + size] for s in manifest.inputs}


def bundle_adapter(out_dir: Path, manifest: Manifest) -> RuntimeAdapter:
    """The bundle under its own runtime, or its ONNX stand-in where that runtime can't run here."""
    try:
        return load_bundle(out_dir, manifest, threads=1)
    except RuntimeUnavailable:
        stand = replace(manifest, runtime="onnxruntime")
        return load_onnx(out_dir, stand, threads=1, optimization=STAND_IN_OPTIMIZATION)


def score_bundle(name: str, source: Path, report: CompileReport, validation: Path) -> dict[str, float]:
    """Each tensor output of the bundle scored against FP32 ONNX Runtime on ``source``; asserts
    every score reaches its metric's floor. Returns the scores by output name."""
    with np.load(validation) as data:
        arrays = {k: data[k] for k in data.files if k != "y"}
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    adapter = bundle_adapter(report.out_dir, report.manifest)
    refs: dict[str, list[np.ndarray]] = {}
    gots: dict[str, list[np.ndarray]] = {}
    try:
        for feed in batches(arrays, report.manifest):
            fp32 = dict(zip(names, session.run(None, feed), strict=True))
            compiled = adapter.infer(feed)
            for k, v in fp32.items():
                if isinstance(v, np.ndarray) and k in compiled:
                    refs.setdefault(k, []).append(v)
                    gots.setdefault(k, []).append(np.asarray(compiled[k]))
    finally:
        adapter.close()
    assert refs, f"{name}: no output of the bundle matched a source output ({names})"
    scores: dict[str, float] = {}
    short: list[str] = []
    for index, out in enumerate(names):
        if out not in refs:
            continue
        ref, got = np.concatenate(refs[out]), np.concatenate(gots[out])
        assert got.shape == ref.shape, f"{name} output {out}: shape {got.shape}, FP32 {ref.shape}"
        for metric in metrics_for(name, index, ref):
            key = f"{out} {metric.label}"
            scores[key] = score(metric, ref, got)
            if scores[key] < metric.floor:
                short.append(f"{key} {scores[key]:.4f} < {metric.floor}")
    assert not short, f"{name} on {report.target} ({report.precision}) against FP32: {'; '.join(short)}"
    return scores


# -- the tier --------------------------------------------------------------------------------------


def check_unsupported(exc: UnsupportedOpError, source: Path, target: str) -> None:
    """The error names an op type of the model, one of its nodes of that type, and the target."""
    message = str(exc)
    assert exc.target == target and target in message
    assert exc.op and exc.op in message
    assert exc.node and exc.node in message
    graph = onnx.load(str(source), load_external_data=False).graph
    # an op of another domain is named with it (ai.onnx.ml.LinearClassifier); op types hold no dot
    op_type = exc.op.rpartition(".")[2]
    assert op_type in {n.op_type for n in graph.node}, f"{exc.op} is no op type of {source.name}"
    assert "\n" not in message and "Traceback" not in message


def _param(pair: tuple[str, str]) -> object:
    return pytest.param(
        *pair, id=f"{pair[0]}-{pair[1]}", marks=[pytest.mark.corpus_ci] if pair in IN_CI else []
    )


@pytest.mark.parametrize(("name", "target"), [_param(p) for p in PAIRS])
def test_model_compiles_or_names_the_unsupported_op(
    name: str, target: str, corpus_files: CorpusFiles, tmp_path: Path
) -> None:
    source, calibration, validation = corpus_files(name)
    out = tmp_path / "bundle"
    opts = CompileOptions(
        precision="auto", calibration=calibration, validation=validation, latency_runs=10, threads=1
    )
    start = time.perf_counter()
    try:
        report = compile_model(source, TARGETS[target], out, opts)
    except UnsupportedOpError as exc:
        OUTCOMES[(name, target)] = Outcome("unsupported", time.perf_counter() - start, str(exc))
        check_unsupported(exc, source, target)
        assert not out.exists()
        return
    except CompileError as exc:
        OUTCOMES[(name, target)] = Outcome(type(exc).__name__, time.perf_counter() - start, str(exc))
        raise
    seconds = time.perf_counter() - start
    manifest = verify_bundle_dir(out)
    assert manifest == report.manifest
    v = manifest.validation
    assert v is not None and v.samples > 0
    if v.top1_agreement is not None and v.min_agreement is not None:
        assert v.top1_agreement >= v.min_agreement
    scores = score_bundle(name, source, report, validation)
    detail = f"{report.precision}, size {report.size_ratio:.2f}, " + ", ".join(
        f"{k} {s:.3f}" for k, s in scores.items()
    )
    OUTCOMES[(name, target)] = Outcome("bundle", seconds, detail)


@pytest.mark.corpus_ci
def test_at_most_one_pair_ends_unsupported() -> None:
    """Over the pairs this session compiled (the whole tier with ``-m corpus``)."""
    if not OUTCOMES:
        pytest.skip("no corpus pair ran in this session (run tests/corpus)")
    unsupported = [f"{m} on {t}" for (m, t), o in OUTCOMES.items() if o.status == "unsupported"]
    assert len(unsupported) <= MAX_UNSUPPORTED, f"unsupported: {', '.join(unsupported)}"
    failed = [
        f"{m} on {t}: {o.status}"
        for (m, t), o in OUTCOMES.items()
        if o.status not in ("bundle", "unsupported")
    ]
    assert not failed, "; ".join(failed)
