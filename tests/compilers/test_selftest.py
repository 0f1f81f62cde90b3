"""Self-test samples: tolerance and which rows go in (pure), and the file the agent reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compilers.selftest import SELFTEST_FILE, choose_atol, pick_rows, top1_margins, write_selftest


def test_atol_is_five_percent_of_the_output_range_with_a_floor() -> None:
    assert choose_atol({"y": np.array([[-30.0, 10.0]])}) == 1.5
    assert choose_atol({"y": np.zeros((2, 2))}) == 1e-3


def test_rows_with_a_clear_winner_come_first() -> None:
    scores = np.array([[1.0, 1.05], [5.0, 0.0], [0.0, 0.5], [0.0, 9.0]])
    np.testing.assert_allclose(top1_margins(scores), [0.05, 5.0, 0.5, 9.0])
    assert pick_rows({"s": scores}, 3, "s", atol=0.45).tolist() == [1, 3, 0]
    assert pick_rows({"s": scores}, 2, None, atol=0.45).tolist() == [0, 1]


def test_file_holds_inputs_and_expected_outputs(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    y = np.eye(6, 3, dtype=np.float32) * 10
    st = write_selftest(tmp_path, {"x": x}, {"scores": y}, 4, "scores")
    assert (st.file, st.samples, st.check_top1) == (SELFTEST_FILE, 4, True)
    assert st.atol == 0.5
    data = np.load(tmp_path / SELFTEST_FILE)
    assert sorted(data.files) == ["input:x", "output:scores"]
    assert data["input:x"].shape == (4, 4) and data["output:scores"].shape == (4, 3)
    rows = pick_rows({"scores": y}, 4, "scores", 0.5)
    np.testing.assert_array_equal(data["input:x"], x[rows])
