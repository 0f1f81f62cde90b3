"""Self-test samples for the agent: a few held-out inputs with the compiled model's outputs and a
tolerance that a correct install passes and a wrong model fails.

The tolerance is ``atol = max(1e-3, 5% of the largest |expected| value)``: the same model under
the same runtime on another CPU differs by kernel choice and rounding (for INT8, by at most a few
quantization steps of the output, well under 5% of its range), while a different or corrupted
model is off by a sizeable share of the range. For classifiers the samples are, where possible,
ones whose top-1 score leads the runner-up by more than ``2 * atol``: any output within the
tolerance then has the same arg-max, so the top-1 check can't fail a correct install on a near tie.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.contracts.manifest import SelfTest

SELFTEST_FILE = "selftest.npz"
ATOL_FLOOR = 1e-3
ATOL_SHARE = 0.05


def choose_atol(expected: dict[str, np.ndarray]) -> float:
    """``max(ATOL_FLOOR, ATOL_SHARE * max |expected|)`` over every output (pure)."""
    peak = max(
        (float(np.max(np.abs(v.astype(np.float64)))) for v in expected.values() if v.size), default=0.0
    )
    return max(ATOL_FLOOR, ATOL_SHARE * peak)


def top1_margins(scores: np.ndarray) -> np.ndarray:
    """Per row, the best score minus the runner-up (pure)."""
    top2 = np.sort(scores.astype(np.float64), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def pick_rows(expected: dict[str, np.ndarray], count: int, classifier: str | None, atol: float) -> np.ndarray:
    """Indices of ``count`` rows: for a classifier, first the rows with a top-1 margin above
    ``2 * atol`` (in order), then the others; else simply the first rows (pure)."""
    n = len(next(iter(expected.values())))
    order = np.arange(n)
    if classifier is not None:
        clear = top1_margins(expected[classifier]) > 2 * atol
        order = np.concatenate([order[clear], order[~clear]])
    return order[: min(count, n)]


def write_selftest(
    staging: Path,
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    count: int,
    classifier: str | None,
) -> SelfTest:
    """Write :data:`SELFTEST_FILE` (``input:<name>``, ``output:<name>``) into ``staging`` and
    return its manifest entry. ``check_top1`` is set for single-output classifiers."""
    atol = choose_atol(expected)
    rows = pick_rows(expected, count, classifier, atol)
    arrays = {f"input:{k}": v[rows] for k, v in inputs.items()}
    arrays.update({f"output:{k}": v[rows] for k, v in expected.items()})
    np.savez(staging / SELFTEST_FILE, **arrays)
    return SelfTest(
        file=SELFTEST_FILE,
        samples=len(rows),
        atol=float(atol),
        rtol=0.0,
        check_top1=classifier is not None and len(expected) == 1,
    )
