"""Validation figures, the gate, and which samples validate (pure parts)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.contracts.manifest import TensorSpec
from compilers.calibration import SampleSet
from compilers.errors import CalibrationError, ValidationGateError
from compilers.validate import Comparison, classifier_output, compare, gate, plan_samples

SCORES = (TensorSpec("scores", "float32", (-1, 3)),)
X = (TensorSpec("x", "float32", (-1, 2)),)


def test_compare_counts_agreement_errors_and_accuracy() -> None:
    ref = {"scores": np.array([[3, 1, 0], [0, 2, 1], [1, 0, 5], [2, 2.1, 0]], np.float32)}
    got = {"scores": np.array([[2.5, 1, 0], [0, 2, 1], [1, 0, 5], [2.2, 2.1, 0]], np.float32)}
    c = compare(ref, got, SCORES, labels=np.array([0, 1, 1, 1]))
    assert c.samples == 4 and c.classifier_output == "scores"
    assert c.top1_agreement == 0.75  # the near tie in the last row flipped
    assert c.max_abs_error == pytest.approx(0.5)
    assert c.mean_abs_error == pytest.approx(0.7 / 12)
    assert c.fp32_accuracy == 0.75 and c.accuracy == 0.5


def test_non_classifier_has_no_agreement_but_is_scored() -> None:
    spec = (TensorSpec("y", "float32", (-1, 1)),)
    ref = {"y": np.linspace(1, 2, 5, dtype=np.float32).reshape(5, 1)}
    c = compare(ref, {"y": ref["y"] + 0.1}, spec, None)
    assert c.top1_agreement is None and c.max_abs_error == pytest.approx(0.1)
    assert [(s.output, s.metric) for s in c.scores] == [("y", "cosine")]
    gate(c, 0.99)  # one value per sample: cosine 1, within the gate
    assert classifier_output(ref, spec) is None
    wrong = compare(ref, {"y": -ref["y"]}, spec, None)
    with pytest.raises(ValidationGateError, match=r"^cosine similarity -1.000 < 0.99 .* output 'y'"):
        gate(wrong, 0.99)


def test_gate_message_has_the_figures() -> None:
    c = Comparison(360, 0.912, 3.2, 0.4, None, None, "scores")
    with pytest.raises(ValidationGateError) as err:
        gate(c, 0.99)
    assert str(err.value).startswith("top-1 agreement 0.912 < 0.99 on 360 samples")
    assert "lower --min-agreement to accept" in str(err.value)
    gate(c, 0.9)


def _set(n: int, labels: bool = False) -> SampleSet:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return SampleSet({"x": x}, np.arange(n) if labels else None, "t")


def test_plan_prefers_the_validation_file() -> None:
    plan = plan_samples(_set(20), _set(7, labels=True), X, limit=1000)
    assert plan.calibration is not None and len(plan.calibration) == 20 and len(plan.validation) == 7
    assert plan.notes == ()


def test_plan_holds_out_a_fifth_of_calibration() -> None:
    plan = plan_samples(_set(20), None, X, limit=1000)
    assert plan.calibration is not None and len(plan.calibration) == 16 and len(plan.validation) == 4
    assert not set(plan.calibration.inputs["x"][:, 0]) & set(plan.validation.inputs["x"][:, 0])
    assert "held out of calibration" in plan.notes[0]


def test_plan_falls_back_to_random_with_a_note() -> None:
    plan = plan_samples(None, None, X, limit=1000)
    assert len(plan.validation) == 64 and "random inputs" in plan.notes[0]
    tiny_cal = plan_samples(_set(3), None, X, limit=1000)  # too few to split
    assert (
        tiny_cal.calibration is not None and len(tiny_cal.calibration) == 3 and len(tiny_cal.validation) == 64
    )


def test_plan_limits_and_respects_a_fixed_batch() -> None:
    plan = plan_samples(None, _set(50, labels=True), X, limit=10)
    assert (
        len(plan.validation) == 10
        and plan.validation.labels is not None
        and len(plan.validation.labels) == 10
    )
    fixed = (TensorSpec("x", "float32", (4, 2)),)
    plan = plan_samples(None, _set(10), fixed, limit=1000)
    assert len(plan.validation) == 8
    with pytest.raises(CalibrationError, match="at least 4 samples"):
        plan_samples(None, _set(3), fixed, limit=1000)
