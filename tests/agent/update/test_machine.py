"""The update state machine's transition table and resume table (pure: no disk, broker or clock)."""

from __future__ import annotations

import pytest

from agent.contracts.state import UpdateState as S
from agent.update.machine import (
    MAX_RESUMES,
    RESUME_ENTRY,
    RESUME_TABLE,
    TRANSITIONS,
    Event,
    InvalidTransition,
    Resume,
    counts_as_resume,
    is_at_rest,
    next_state,
    resume_action,
)

HAPPY_PATH = [
    (Event.START, S.DOWNLOADING),
    (Event.DOWNLOADED, S.VERIFYING),
    (Event.VERIFIED, S.INSTALLING),
    (Event.INSTALLED, S.LOADING),
    (Event.LOADED, S.SELF_TEST),
    (Event.SELF_TEST_PASSED, S.COMMITTED),
]


@pytest.mark.parametrize("start", [S.IDLE, S.COMMITTED])
def test_happy_path_from_rest_reaches_committed(start: S) -> None:
    state = start
    seen = []
    for event, expected in HAPPY_PATH:
        state = next_state(state, event)
        seen.append(state)
        assert state is expected
    assert seen[-1] is S.COMMITTED


@pytest.mark.parametrize("state", [S.VERIFYING, S.INSTALLING, S.LOADING, S.SELF_TEST])
def test_failure_after_download_rolls_back_then_idles(state: S) -> None:
    assert next_state(state, Event.FAILED) is S.ROLLING_BACK
    assert next_state(S.ROLLING_BACK, Event.ROLLED_BACK) is S.IDLE


def test_failed_or_cancelled_download_goes_straight_to_idle() -> None:
    # Nothing was installed yet, so there is nothing to roll back.
    assert next_state(S.DOWNLOADING, Event.FAILED) is S.IDLE
    assert next_state(S.DOWNLOADING, Event.CANCELLED) is S.IDLE


@pytest.mark.parametrize("state", [S.IDLE, S.COMMITTED])
def test_decisions_without_download_from_rest(state: S) -> None:
    assert next_state(state, Event.REFUSED) is S.IDLE
    assert next_state(state, Event.ALREADY_ACTIVE) is S.COMMITTED
    assert next_state(state, Event.UNLOADED) is S.COMMITTED


def test_every_pair_outside_the_table_is_refused() -> None:
    allowed = set(TRANSITIONS)
    for state in S:
        for event in Event:
            if (state, event) in allowed:
                continue
            with pytest.raises(InvalidTransition, match=f"{event}.*{state}"):
                next_state(state, event)


def test_a_new_update_cannot_start_while_one_is_in_flight() -> None:
    for state in (S.DOWNLOADING, S.VERIFYING, S.INSTALLING, S.LOADING, S.SELF_TEST, S.ROLLING_BACK):
        assert not is_at_rest(state)
        with pytest.raises(InvalidTransition):
            next_state(state, Event.START)


def test_commit_is_reachable_only_from_self_test() -> None:
    sources = {s for (s, e), t in TRANSITIONS.items() if t is S.COMMITTED and e is Event.SELF_TEST_PASSED}
    assert sources == {S.SELF_TEST}


def test_resume_table_covers_every_state() -> None:
    assert set(RESUME_TABLE) == set(S)


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (S.IDLE, Resume.SERVE_ACTIVE),
        (S.COMMITTED, Resume.SERVE_ACTIVE),
        (S.DOWNLOADING, Resume.RESUME_DOWNLOAD),
        (S.VERIFYING, Resume.RESTART_FROM_VERIFY),
        (S.INSTALLING, Resume.RESTART_FROM_VERIFY),
        # A power cut during a long load (a TensorRT engine build) is ordinary: resumed, bounded.
        (S.LOADING, Resume.RESTART_FROM_VERIFY),
        (S.SELF_TEST, Resume.RESTART_FROM_VERIFY),
        (S.ROLLING_BACK, Resume.ROLL_BACK),
    ],
)
def test_resume_action_after_a_crash(state: S, action: Resume) -> None:
    assert resume_action(state, resumes=0) is action


@pytest.mark.parametrize("state", [S.VERIFYING, S.INSTALLING, S.LOADING, S.SELF_TEST])
def test_an_update_that_keeps_crashing_rolls_back(state: S) -> None:
    assert resume_action(state, resumes=MAX_RESUMES - 1) is not Resume.ROLL_BACK
    assert resume_action(state, resumes=MAX_RESUMES) is Resume.ROLL_BACK


@pytest.mark.parametrize("resumes", [0, MAX_RESUMES - 1, MAX_RESUMES, MAX_RESUMES + 1, 100])
def test_a_download_resumes_however_often_the_agent_stopped(resumes: int) -> None:
    # A reboot during a long download is no crash loop: nothing was installed or loaded yet.
    assert resume_action(S.DOWNLOADING, resumes=resumes) is Resume.RESUME_DOWNLOAD


def test_only_restarts_past_the_download_count_as_resumes() -> None:
    assert {a for a in Resume if counts_as_resume(a)} == {Resume.RESTART_FROM_VERIFY}


def test_resume_entries_are_states_the_table_can_leave() -> None:
    assert RESUME_ENTRY[Resume.RESUME_DOWNLOAD] is S.DOWNLOADING
    assert RESUME_ENTRY[Resume.RESTART_FROM_VERIFY] is S.VERIFYING
    assert RESUME_ENTRY[Resume.ROLL_BACK] is S.ROLLING_BACK
    for entry in RESUME_ENTRY.values():
        assert any(s is entry for (s, _e) in TRANSITIONS)


def test_after_an_orderly_stop_a_cut_short_load_restarts_from_verify() -> None:
    from agent.update.machine import MAX_RESUMES, Resume, resume_action

    for state in (S.LOADING, S.SELF_TEST):
        assert resume_action(state, 0) is Resume.RESTART_FROM_VERIFY  # after a crash too, now
        assert resume_action(state, 0, clean_stop=True) is Resume.RESTART_FROM_VERIFY
        # still bounded: an update that keeps getting stopped mid-load is given up on
        assert resume_action(state, MAX_RESUMES, clean_stop=True) is Resume.ROLL_BACK
    assert resume_action(S.ROLLING_BACK, 0, clean_stop=True) is Resume.ROLL_BACK
