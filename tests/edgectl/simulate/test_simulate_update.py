"""The report sequence of a simulated update follows the agent's own transition table."""

from __future__ import annotations

import pytest

from agent.contracts.state import ErrorCode
from agent.contracts.state import UpdateState as S
from edgectl.simulate.faults import FAIL_AT
from edgectl.simulate.update import already_active_step, update_steps

FORWARD = [S.DOWNLOADING, S.VERIFYING, S.INSTALLING, S.LOADING, S.SELF_TEST]


def test_a_good_update_reports_every_step_then_commits() -> None:
    steps = update_steps(None)
    assert [s.state for s in steps] == [*FORWARD, S.COMMITTED]
    assert [s.commits for s in steps] == [False] * 5 + [True]
    assert all(s.error is None for s in steps)
    assert [s.final for s in steps] == [False] * 5 + [True]


def test_an_update_from_a_committed_device_walks_the_same_way() -> None:
    assert [s.state for s in update_steps(None, start=S.COMMITTED)] == [*FORWARD, S.COMMITTED]


def test_a_self_test_failure_rolls_back_with_its_code() -> None:
    steps = update_steps(ErrorCode.SELF_TEST_FAILED)
    assert [s.state for s in steps] == [*FORWARD, S.ROLLING_BACK, S.IDLE]
    assert steps[-1].error is not None and steps[-1].error.code == "SELF_TEST_FAILED"
    assert steps[-2].error == steps[-1].error
    assert not any(s.commits for s in steps)


def test_a_download_failure_ends_at_once_without_a_roll_back() -> None:
    steps = update_steps(ErrorCode.DOWNLOAD_FAILED, "HTTP 404")
    assert [s.state for s in steps] == [S.DOWNLOADING, S.IDLE]
    assert steps[-1].error is not None and steps[-1].error.message == "HTTP 404"


@pytest.mark.parametrize("code", list(FAIL_AT))
def test_every_code_fails_at_its_step(code: ErrorCode) -> None:
    states = [s.state for s in update_steps(code)]
    at = FAIL_AT[code]
    assert states[: FORWARD.index(at) + 1] == FORWARD[: FORWARD.index(at) + 1]
    assert states[-1] is S.IDLE and S.COMMITTED not in states
    assert (S.ROLLING_BACK in states) == (at is not S.DOWNLOADING)


def test_a_model_already_serving_commits_in_one_report() -> None:
    step = already_active_step(S.IDLE)
    assert step.state is S.COMMITTED and step.commits
