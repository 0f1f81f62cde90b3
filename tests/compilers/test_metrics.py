"""The gate's metrics (pure), the choice of metric per output, and the per-output gate."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.contracts.manifest import Manifest, OutputMetric, TensorSpec, Validation
from compilers.errors import CompileError, ValidationGateError
from compilers.metrics import (
    channel_axis,
    choose_metric,
    cosine_similarity,
    exact_match,
    relative_error,
    score_outputs,
    shown,
    sqnr_db,
    top1_agreement,
)
from compilers.options import CompileOptions
from compilers.validate import compare, gate

RNG = np.random.default_rng(0)


def test_figures_of_each_metric() -> None:
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    assert top1_agreement(ref, np.array([[2.0, 2.5, 0.0], [0.0, 2.0, 1.0]])) == 0.5
    assert cosine_similarity(ref, ref * 3) == pytest.approx(1.0)
    assert cosine_similarity(ref, -ref) == pytest.approx(-1.0)
    assert cosine_similarity(np.zeros((2, 3)), np.zeros((2, 3))) == 1.0
    assert cosine_similarity(np.zeros((1, 3)), np.ones((1, 3))) == 0.0
    tiny = np.full((2, 3), 1e-8)
    assert cosine_similarity(tiny, -tiny) == 1.0  # a blank map: equal within rounding
    assert cosine_similarity(tiny * 1e5, -tiny * 1e5) == pytest.approx(-1.0)
    noisy = ref + 0.1
    assert sqnr_db(ref, noisy) == pytest.approx(10 * math.log10(15 / 0.06))
    assert sqnr_db(ref, ref) == math.inf
    assert relative_error(ref, noisy) == pytest.approx(math.sqrt(0.06 / 15))
    assert relative_error(ref, ref) == 0.0
    assert exact_match(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75


def test_a_detector_head_is_scored_by_its_worst_channel() -> None:
    # [N, 4 + classes, anchors]: boxes in pixels beside class scores in [0, 1]
    n, classes, anchors = 6, 8, 200
    boxes = RNG.uniform(0, 320, size=(n, 4, anchors))
    scores = RNG.uniform(0, 1, size=(n, classes, anchors)) ** 4
    ref = np.concatenate([boxes, scores], axis=1)
    lost = ref.copy()
    lost[:, 4:] = 0.0  # the scores quantized to nothing on the boxes' scale
    whole = ref.reshape(n, -1), lost.reshape(n, -1)
    assert cosine_similarity(*whole) > 0.99  # the flattened tensor hides it
    assert cosine_similarity(ref, lost) == 0.0
    noisy = ref * (1 + RNG.normal(scale=1e-3, size=ref.shape))
    assert cosine_similarity(ref, noisy) > 0.999
    assert channel_axis(ref.shape) == 1
    assert channel_axis((4, 8400, 85)) == 2  # [N, anchors, 5 + classes]: the short axis
    assert channel_axis((4, 16)) is None
    assert "worst of 12 channels on axis 1" in choose_metric("output0", ref)[1]


def test_top1_over_the_last_axis_of_per_anchor_scores() -> None:
    ref = RNG.normal(size=(4, 10, 2))
    got = ref.copy()
    got[0, 0] = got[0, 0][::-1]  # one anchor of forty flips
    expected = 39 / 40 if np.argmax(ref[0, 0]) != np.argmax(got[0, 0]) else 1.0
    assert top1_agreement(ref, got) == expected


def test_top1_refuses_a_single_value_per_sample() -> None:
    with pytest.raises(CompileError, match=r"needs class scores \[N, C\] with C > 1, got shape \[5, 1\]"):
        top1_agreement(np.zeros((5, 1)), np.zeros((5, 1)))


@pytest.mark.parametrize(
    ("name", "value", "metric"),
    [
        ("scores", RNG.normal(size=(8, 10)).astype(np.float32), "top1"),
        ("labels", np.arange(8, dtype=np.int64), "exact"),
        ("mask", np.ones((8, 4), bool), "exact"),
        ("probs", np.full((8, 32, 2), 0.5, np.float32), "cosine"),  # per-anchor probabilities: a map
        ("boxes", RNG.normal(size=(8, 4)).astype(np.float32), "cosine"),  # a regression, by its name
        ("pooler_output", RNG.normal(size=(8, 16)).astype(np.float32), "cosine"),
        ("y", RNG.normal(size=(8, 1)).astype(np.float32), "cosine"),
        ("heatmap", RNG.normal(size=(8, 3, 16, 16)).astype(np.float32), "cosine"),
    ],
)
def test_metric_chosen_from_the_output(name: str, value: np.ndarray, metric: str) -> None:
    assert choose_metric(name, value)[0] == metric


def test_unit_norm_rows_with_negatives_are_an_embedding() -> None:
    e = RNG.normal(size=(8, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert choose_metric("output", e)[0] == "cosine"
    softmax = np.exp(e) / np.exp(e).sum(axis=1, keepdims=True)  # unit L1 norm, no negatives
    assert choose_metric("output", softmax)[0] == "top1"


def _face(n: int = 40, anchors: int = 16) -> tuple[dict[str, np.ndarray], tuple[TensorSpec, ...]]:
    logits = RNG.normal(size=(n, anchors, 2))
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    ref = {
        "boxes": RNG.normal(size=(n, anchors, 4)),
        "landmarks": RNG.normal(size=(n, anchors, 10)),
        "probs": probs,
    }
    specs = tuple(TensorSpec(k, "float32", (-1, anchors, v.shape[-1])) for k, v in ref.items())
    return ref, specs


def test_face_outputs_are_scored_one_by_one_and_pass() -> None:
    """The issue's face net: small noise on every output; output by output it passes."""
    ref, specs = _face()
    got = {k: v + RNG.normal(0, 0.02, v.shape) for k, v in ref.items()}
    c = compare(ref, got, specs, None)
    assert [(s.output, s.metric) for s in c.scores] == [
        ("boxes", "cosine"),
        ("landmarks", "cosine"),
        ("probs", "cosine"),
    ]
    assert all(s.value > 0.99 for s in c.scores)
    assert c.top1_agreement is None
    gate(c, 0.99)


def test_one_bad_output_of_three_fails_the_gate_by_name() -> None:
    ref, specs = _face()
    got = dict(ref, landmarks=RNG.normal(size=ref["landmarks"].shape))
    with pytest.raises(ValidationGateError) as err:
        gate(compare(ref, got, specs, None), 0.99)
    msg = str(err.value)
    assert msg.startswith("cosine similarity ") and "for output 'landmarks'" in msg
    assert "lower --metric-threshold to accept" in msg


def test_a_named_metric_and_threshold_apply_to_every_output() -> None:
    ref, specs = _face()
    got = {k: v + RNG.normal(0, 0.05, v.shape) for k, v in ref.items()}
    scores = score_outputs(ref, got, [s.name for s in specs], 0.99, "sqnr", 40.0)
    assert {s.metric for s in scores} == {"sqnr"} and all(s.threshold == 40.0 for s in scores)
    assert not any(s.passed for s in scores)  # about 26 dB of noise
    relerr = score_outputs(ref, got, ["boxes"], 0.99, "relerr", 0.1)[0]
    assert not relerr.higher_is_better and relerr.passed and relerr.describe().startswith("relative error")


def test_min_agreement_is_the_threshold_of_top1() -> None:
    ref = {"scores": RNG.normal(size=(100, 5))}
    got = {"scores": ref["scores"].copy()}
    got["scores"][:3] = got["scores"][:3, ::-1]
    spec = (TensorSpec("scores", "float32", (-1, 5)),)
    c = compare(ref, got, spec, None, min_agreement=0.9)
    assert c.scores[0].threshold == 0.9 and c.scores[0].passed
    with pytest.raises(ValidationGateError, match="lower --min-agreement to accept"):
        gate(compare(ref, got, spec, None, min_agreement=0.995), 0.995)


def test_user_metric_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "my_metric.py").write_text(
        "import numpy as np\n"
        "def iou_like(ref, got):\n"
        "    return {'boxes': float(np.mean(np.abs(ref['boxes'] - got['boxes']) < 0.1))}\n"
        "def overall(ref, got):\n"
        "    return 0.5\n"
    )
    ref, specs = _face()
    got = dict(ref)
    got["boxes"] = ref["boxes"] + 0.05
    names = [s.name for s in specs]
    s = score_outputs(ref, got, names, 0.99, f"{tmp_path / 'my_metric.py'}:iou_like", 0.9)
    assert [(x.output, x.value, x.passed) for x in s] == [("boxes", 1.0, True)]
    sys.path.insert(0, str(tmp_path))
    try:
        one = score_outputs(ref, got, names, 0.99, "my_metric:overall", 0.6)
    finally:
        sys.path.remove(str(tmp_path))
    assert [(x.output, x.value, x.passed) for x in one] == [("*", 0.5, False)]
    with pytest.raises(CompileError, match="cannot import it"):
        score_outputs(ref, got, names, 0.99, "no_such_module_here:f")


def test_options_refuse_unknown_metric_and_method() -> None:
    with pytest.raises(CompileError, match="unknown metric 'ssim'"):
        CompileOptions(metric="ssim").check()
    with pytest.raises(CompileError, match="metric_threshold needs a metric"):
        CompileOptions(metric_threshold=0.5).check()
    with pytest.raises(CompileError, match="unknown calibration method 'KL'"):
        CompileOptions(calibration_method="KL").check()
    CompileOptions(metric="cosine", metric_threshold=0.98, calibration_method="Entropy").check()


def test_validation_with_metrics_round_trips_and_old_manifests_read() -> None:
    v = Validation(
        samples=10,
        top1_agreement=None,
        max_abs_error=0.1,
        mean_abs_error=0.01,
        size_bytes=10,
        fp32_size_bytes=40,
        metrics=(OutputMetric("boxes", "cosine", 0.995, 0.99, True),),
        calibration_method="Entropy",
    )
    back = Validation.from_dict(v.to_dict())
    assert back == v
    old = {
        k: x
        for k, x in v.to_dict().items()
        if k not in ("metrics", "calibration_method", "mixed", "precision_choice")
    }
    read = Validation.from_dict(old)
    assert read.metrics == () and read.calibration_method is None and read.mixed is None
    assert Manifest.__dataclass_fields__["validation"].default is None


def test_a_metric_per_output() -> None:
    ref, specs = _face()
    got = {k: v + RNG.normal(0, 0.02, v.shape) for k, v in ref.items()}
    names = [s.name for s in specs]
    scores = score_outputs(ref, got, names, 0.9, "probs=top1,boxes=sqnr", 10.0)
    assert [(s.output, s.metric, s.threshold) for s in scores] == [
        ("boxes", "sqnr", 10.0),
        ("landmarks", "cosine", 0.99),  # not named: chosen, with its default
        ("probs", "top1", 10.0),
    ]
    with pytest.raises(CompileError, match="names output 'box'; the outputs are boxes, landmarks, probs"):
        score_outputs(ref, got, names, 0.9, "box=cosine")
    with pytest.raises(CompileError, match="expected OUTPUT=NAME"):
        CompileOptions(metric="probs=ssim").check()
    CompileOptions(metric="output:0=cosine").check()  # an output name with a colon is no module


def test_a_figure_that_fails_its_threshold_never_reads_as_meeting_it() -> None:
    # 0.98962 rounds to 0.990 at three decimals: "cosine similarity 0.990 < 0.99" reads as a bug.
    assert shown(0.98962, 0.99) == "0.9896"
    assert shown(0.9931, 0.99) == "0.993"
    assert float(shown(0.9899999, 0.99)) < 0.99
    assert shown(0.0104, 0.01, higher_is_better=False) == "0.0104"  # an error just over its bound
    assert shown(float("nan"), 0.99) == "nan"
