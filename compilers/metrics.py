"""How a compiled model's outputs compare with FP32's, output by output (pure numpy).

Each output gets the metric that means something for it (:func:`choose_metric`):

* integer or boolean outputs (labels, indices, masks): ``exact``, the share of elements equal;
* class scores ``[N, C]`` with ``C > 1``: ``top1``, the share of samples with the same arg-max;
  rows of unit L2 norm with negative values, an output the graph makes by pooling (mean-pooled
  tokens, a global average pool), or a name that says so (``embedding``, ``feature``, ``box``,
  ``landmark``, ...), are embeddings or regressions instead;
* everything else (probability maps, embeddings, box and landmark regressions, sequences,
  single values): ``cosine``, the mean over samples of the cosine similarity of the flattened
  sample. An output of rank 3 or more is scored channel by channel and its figure is the worst
  channel's (:func:`channel_axis`): a detector's ``[N, 4 + classes, anchors]`` head holds boxes
  in pixels beside scores in ``[0, 1]``, and the cosine of the whole tensor is the boxes' alone
  (scores quantized to nothing still give 0.99).

``sqnr`` (signal to quantization noise ratio, dB) and ``relerr`` (relative L2 error, lower is
better) are there to choose by name (``--metric``). A user's function ``module:function`` scores a
whole batch: it takes ``(fp32_outputs, got_outputs)`` (dicts of arrays keyed by output name) and
returns ``{output: value}`` or one float; higher is better.

Every figure is computed in float64 over all validation samples.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compilers.errors import CompileError

Outputs = dict[str, np.ndarray]
UserMetric = Callable[[Outputs, Outputs], "dict[str, float] | float"]

TOP1, COSINE, SQNR, RELERR, EXACT = "top1", "cosine", "sqnr", "relerr", "exact"
METRICS = (TOP1, COSINE, SQNR, RELERR, EXACT)
# Default thresholds of the metrics that are not agreement shares (those take min_agreement).
DEFAULT_MIN_COSINE = 0.99
DEFAULT_MIN_SQNR_DB = 20.0  # about a cosine of 0.995
DEFAULT_MAX_RELERR = 0.1  # the same noise as 20 dB
LABELS = {
    TOP1: "top-1 agreement",
    COSINE: "cosine similarity",
    SQNR: "SQNR (dB)",
    RELERR: "relative error",
    EXACT: "exact match",
}
_NOT_CLASS_SCORES = re.compile(
    r"emb|feat|vec|hidden|pool|box|bbox|loc|landmark|kpt|keypoint|reg|coord|depth|mask|offset",
    re.IGNORECASE,
)
_UNIT_NORM_TOL = 1e-2
# Within these, a sample equals FP32 (float32 rounding): numpy's allclose defaults, tightened.
ALIKE_ATOL, ALIKE_RTOL = 1e-6, 1e-5


@dataclass(frozen=True)
class OutputScore:
    """One output's figure against FP32 and whether it meets its threshold."""

    output: str
    metric: str  # one of METRICS, or the user's ``module:function``
    value: float
    threshold: float
    higher_is_better: bool = True
    chosen: str = ""  # why this metric (``auto: class scores [N, C]``, ``--metric``)

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold

    @property
    def label(self) -> str:
        return LABELS.get(self.metric, self.metric)

    def describe(self) -> str:
        """``top-1 agreement 0.912 < 0.99`` (or ``>=`` when it passed)."""
        ok = self.passed
        op = (">=" if ok else "<") if self.higher_is_better else ("<=" if ok else ">")
        value = shown(self.value, self.threshold, self.higher_is_better)
        return f"{self.label} {value} {op} {self.threshold:g}"


def _fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


def shown(value: float, threshold: float, higher_is_better: bool = True) -> str:
    """``value`` written with as many decimals (3 or more) as it takes for the written figure to
    fall on the same side of ``threshold`` as the value: 0.98962 against 0.99 reads ``0.9896``,
    not ``0.990 < 0.99``."""
    text = _fmt(value)
    if math.isnan(value) or abs(value) >= 100:
        return text

    def side(x: float) -> bool:
        return x >= threshold if higher_is_better else x <= threshold

    for decimals in range(3, 13):
        text = f"{value:.{decimals}f}"
        if side(float(text)) == side(value):
            return text
    return repr(value)


# -- the metrics ---------------------------------------------------------------------------------


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def top1_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Share of rows (every index but the last axis) whose arg-max over the last axis matches."""
    r, g = _f64(ref), _f64(got)
    if r.ndim < 2 or r.shape[-1] < 2:
        raise CompileError(
            f"top-1 agreement needs class scores [N, C] with C > 1, got shape {list(r.shape)}; "
            "choose another --metric"
        )
    return float(np.mean(r.argmax(axis=-1) == g.argmax(axis=-1)))


def channel_axis(shape: tuple[int, ...]) -> int | None:
    """The axis whose slices an output of rank 3 or more is scored by: the shortest axis after
    the batch (the first of equals): ``C`` of ``[N, C, H, W]`` and of ``[N, H, W, C]``, the
    ``4 + classes`` rows of a ``[N, 84, 8400]`` detector head, the tokens of ``[N, 128, 384]``.
    ``None`` below rank 3 (pure)."""
    if len(shape) < 3:
        return None
    dims = list(shape[1:])
    return 1 + dims.index(min(dims))


def channels_of(a: np.ndarray) -> np.ndarray:
    """``a`` as ``[N, channels, rest]`` (:func:`channel_axis`); ``[N, 1, rest]`` below rank 3."""
    axis = channel_axis(a.shape)
    if axis is None:
        return a.reshape(len(a), 1, -1)
    return np.moveaxis(a, axis, 1).reshape(len(a), a.shape[axis], -1)


def cosine_similarity(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean over samples (axis 0) of the cosine similarity of the flattened sample; for rank 3
    or more, of each channel's slice (:func:`channel_axis`), and the worst channel's mean. A
    sample equal to FP32 within float32 rounding (``|got - ref| <= ATOL + RTOL * max |ref|``,
    which takes in two zero samples) counts as alike (1): the cosine of two near-zero vectors, a
    blank image's probability map say, is rounding noise. A zero sample against a non-zero one
    is 0."""
    if np.asarray(ref).size == 0:
        return 1.0
    r3, g3 = channels_of(_f64(ref)), channels_of(_f64(got))
    return min(_sample_cosine(r3[:, c], g3[:, c]) for c in range(r3.shape[1]))


def _sample_cosine(r: np.ndarray, g: np.ndarray) -> float:
    """Mean over rows of the cosine similarity of ``[N, K]`` rows (see :func:`cosine_similarity`)."""
    if r.size == 0:
        return 1.0
    nr, ng = np.linalg.norm(r, axis=1), np.linalg.norm(g, axis=1)
    dot = np.sum(r * g, axis=1)
    same = np.max(np.abs(r - g), axis=1) <= ALIKE_ATOL + ALIKE_RTOL * np.max(np.abs(r), axis=1)
    denom = np.where(nr * ng > 0, nr * ng, 1.0)
    cos = np.where(nr * ng > 0, dot / denom, 0.0)
    cos = np.where(same, 1.0, cos)
    return float(np.mean(np.clip(cos, -1.0, 1.0))) if len(cos) else 1.0


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ref - got)^2)`` over the whole batch; ``inf`` when exact."""
    r, g = _f64(ref), _f64(got)
    noise = float(np.sum((r - g) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    """``||ref - got|| / ||ref||`` (L2 over the whole batch); 0 when exact, ``inf`` when the
    reference is all zeros and the result is not."""
    r, g = _f64(ref), _f64(got)
    diff, norm = float(np.linalg.norm(r - g)), float(np.linalg.norm(r))
    if diff == 0.0:
        return 0.0
    return diff / norm if norm > 0 else math.inf


def exact_match(ref: np.ndarray, got: np.ndarray) -> float:
    """Share of elements that are equal."""
    r, g = np.asarray(ref), np.asarray(got)
    return float(np.mean(r == g)) if r.size else 1.0


FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    TOP1: top1_agreement,
    COSINE: cosine_similarity,
    SQNR: sqnr_db,
    RELERR: relative_error,
    EXACT: exact_match,
}


# -- choosing ------------------------------------------------------------------------------------


def _is_embedding(arr: np.ndarray) -> bool:
    """Rows of unit L2 norm that take negative values: normalised embeddings, not class scores
    (softmax rows have unit L1 norm and no negatives)."""
    a = _f64(arr)
    if a.size == 0 or not np.any(a < 0):
        return False
    return bool(np.all(np.abs(np.linalg.norm(a, axis=1) - 1.0) < _UNIT_NORM_TOL))


def choose_metric(name: str, ref: np.ndarray, pooled: bool = False) -> tuple[str, str]:
    """The metric for output ``name`` given its FP32 values, and why (pure). ``pooled``: the
    graph makes the output by pooling (:func:`compilers.modelcheck.pooled_outputs`)."""
    arr = np.asarray(ref)
    if arr.dtype.kind in "biu":
        return EXACT, f"integer output {arr.dtype}"
    if arr.ndim == 2 and arr.shape[1] > 1:
        if pooled:
            return COSINE, f"[N, {arr.shape[1]}] pooled from a sequence or map (an embedding)"
        if _NOT_CLASS_SCORES.search(name):
            return COSINE, f"[N, {arr.shape[1]}] named like a regression or embedding"
        if _is_embedding(arr):
            return COSINE, f"[N, {arr.shape[1]}] rows of unit norm (an embedding)"
        return TOP1, f"class scores [N, {arr.shape[1]}]"
    shape = "[" + ", ".join(["N", *(str(d) for d in arr.shape[1:])]) + "]"
    axis = channel_axis(arr.shape)
    if axis is not None:
        return COSINE, f"{shape}: a map or sequence, worst of {arr.shape[axis]} channels on axis {axis}"
    return COSINE, f"{shape}: a map, sequence, regression or single value"


def default_threshold(metric: str, min_agreement: float) -> float:
    return {
        TOP1: min_agreement,
        EXACT: min_agreement,
        COSINE: DEFAULT_MIN_COSINE,
        SQNR: DEFAULT_MIN_SQNR_DB,
        RELERR: DEFAULT_MAX_RELERR,
    }[metric]


def is_user_metric(metric: str | None) -> bool:
    return metric is not None and "=" not in metric and ":" in metric


def per_output(metric: str | None) -> dict[str, str] | None:
    """``OUTPUT=NAME[,OUTPUT=NAME...]`` as a mapping; ``None`` for any other form. Raises
    :class:`CompileError` for a pair without a name or with an unknown metric."""
    if metric is None or "=" not in metric:
        return None
    out: dict[str, str] = {}
    for pair in metric.split(","):
        output, _, name = pair.strip().rpartition("=")
        if not output or name not in METRICS:
            raise CompileError(
                f"--metric {pair.strip()!r}: expected OUTPUT=NAME with NAME one of {', '.join(METRICS)}"
            )
        out[output] = name
    return out


def load_user_metric(spec: str) -> UserMetric:
    """Import ``module:function`` (``module`` may also be a ``.py`` file's path). Raises
    :class:`CompileError` (one line) when it can't."""
    module, _, attr = spec.rpartition(":")
    if not module or not attr:
        raise CompileError(f"--metric {spec!r}: expected a metric name or module:function")
    try:
        if module.endswith(".py"):
            path = Path(module).expanduser()
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            if loader_spec is None or loader_spec.loader is None or not path.is_file():
                raise ImportError(f"no file {module}")
            mod = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
        fn = getattr(mod, attr)
    except Exception as exc:  # the user's module: any error importing it is reported, in one line
        raise CompileError(f"--metric {spec!r}: cannot import it: {type(exc).__name__}: {exc}") from exc
    if not callable(fn):
        raise CompileError(f"--metric {spec!r} is not a function")
    return fn


def check_metric(metric: str | None) -> None:
    """Raise :class:`CompileError` for a metric name that is neither known nor ``module:function``."""
    if metric is None or is_user_metric(metric) or per_output(metric) is not None:
        return
    if metric not in METRICS:
        raise CompileError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}, or module:function")


def _user_scores(
    spec: str, reference: Outputs, got: Outputs, names: list[str], threshold: float
) -> list[OutputScore]:
    fn = load_user_metric(spec)
    try:
        result = fn(dict(reference), dict(got))
    except Exception as exc:
        raise CompileError(f"--metric {spec} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(result, dict):
        unknown = [k for k in result if k not in reference]
        if unknown:
            raise CompileError(f"--metric {spec} scored {unknown[0]!r}, which is not an output")
        items = [(str(k), result[k]) for k in names if k in result]
    else:
        items = [("*", result)]
    out = []
    for output, value in items:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise CompileError(f"--metric {spec} returned {value!r}, not a number") from None
        out.append(OutputScore(output, spec, v, threshold, True, "--metric"))
    if not out:
        raise CompileError(f"--metric {spec} returned no figure")
    return out


def score_outputs(
    reference: Outputs,
    got: Outputs,
    names: list[str],
    min_agreement: float,
    metric: str | None = None,
    threshold: float | None = None,
    pooled: frozenset[str] = frozenset(),
) -> tuple[OutputScore, ...]:
    """Score every output in ``names`` (pure but for importing a user's metric); ``pooled``
    names the outputs the graph pools (embeddings, see :func:`choose_metric`).

    ``metric`` ``None`` chooses per output (:func:`choose_metric`); a name applies it to every
    output; ``OUTPUT=NAME,...`` names the metric of some outputs (the others are chosen);
    ``module:function`` calls the user's function. ``threshold`` replaces the named metrics'
    defaults (the agreement metrics default to ``min_agreement``). Raises
    :class:`CompileError` for a metric that can't score an output, or an output name that is
    not one.
    """
    check_metric(metric)
    mapping = per_output(metric)
    if mapping is not None:
        unknown = [k for k in mapping if k not in names]
        if unknown:
            raise CompileError(f"--metric names output {unknown[0]!r}; the outputs are {', '.join(names)}")
    if metric is not None and is_user_metric(metric):
        return tuple(
            _user_scores(metric, reference, got, names, min_agreement if threshold is None else threshold)
        )
    scores = []
    for name in names:
        ref, out = reference[name], got[name]
        if ref.shape != out.shape:
            raise CompileError(
                f"output {name!r}: the compiled model gives shape {list(out.shape)}, FP32 {list(ref.shape)}"
            )
        named = mapping.get(name) if mapping is not None else metric
        if named is None:
            chosen, why = choose_metric(name, ref, name in pooled)
            thr = default_threshold(chosen, min_agreement)
        else:
            chosen, why = named, "--metric"
            thr = default_threshold(chosen, min_agreement) if threshold is None else threshold
        value = FUNCTIONS[chosen](ref, out)
        scores.append(OutputScore(name, chosen, value, thr, chosen != RELERR, why))
    return tuple(scores)
