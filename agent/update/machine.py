"""The update state machine: enum states, enum events and one declarative transition table.

Pure: no disk, no network, no clock. The reconciler (the I/O shell) performs one step per state,
posts the event that step produced, persists the new state in the journal and only then performs
the next side effect. After a crash, :func:`resume_action` reads the state the journal was left in
and says how to go on; anything uncertain rolls back.

::

    IDLE|COMMITTED ──START──► DOWNLOADING ──DOWNLOADED──► VERIFYING ──VERIFIED──► INSTALLING
          ▲    ▲                  │ FAILED / CANCELLED                                │ INSTALLED
          │    └──────────────────┘                                                   ▼
          │                        ROLLING_BACK ◄──FAILED── SELF_TEST ◄──LOADED── LOADING
          └────ROLLED_BACK─────────┘  (FAILED from VERIFYING, INSTALLING, LOADING too)
                                                 │ SELF_TEST_PASSED
                                                 ▼
                                             COMMITTED

A download that fails has nothing to undo (the inactive slot was not touched yet), so it goes
straight back to IDLE; every later step has touched the inactive slot or loaded a model and goes
through ROLLING_BACK.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from agent.contracts.state import UpdateState

S = UpdateState


class Event(StrEnum):
    """What a step reports when it is done."""

    START = "START"  # a new model to install
    ALREADY_ACTIVE = "ALREADY_ACTIVE"  # the desired model is the one serving: record the generation
    UNLOADED = "UNLOADED"  # the desired state has no model: stop serving
    REFUSED = "REFUSED"  # refused before downloading (wrong target, runtime missing)
    DOWNLOADED = "DOWNLOADED"
    VERIFIED = "VERIFIED"
    INSTALLED = "INSTALLED"
    LOADED = "LOADED"
    SELF_TEST_PASSED = "SELF_TEST_PASSED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # a newer desired state replaced this one mid-download
    ROLLED_BACK = "ROLLED_BACK"


class Resume(StrEnum):
    """What to do at start-up, given the state the journal was left in."""

    SERVE_ACTIVE = "SERVE_ACTIVE"  # no update in flight: serve the active slot, wait for news
    RESUME_DOWNLOAD = "RESUME_DOWNLOAD"  # continue the download where the .part file ends
    RESTART_FROM_VERIFY = "RESTART_FROM_VERIFY"  # the download is complete: verify it again, reinstall
    ROLL_BACK = "ROLL_BACK"  # uncertain: undo, keep the active slot, mark the generation failed


class InvalidTransition(RuntimeError):
    """An event that the current state does not accept: a bug in the caller, never a bad input."""


_AT_REST = (S.IDLE, S.COMMITTED)
_ROLLBACK_FROM = (S.VERIFYING, S.INSTALLING, S.LOADING, S.SELF_TEST)

_TABLE: dict[tuple[UpdateState, Event], UpdateState] = {
    **{(s, Event.START): S.DOWNLOADING for s in _AT_REST},
    **{(s, Event.ALREADY_ACTIVE): S.COMMITTED for s in _AT_REST},
    **{(s, Event.UNLOADED): S.COMMITTED for s in _AT_REST},
    **{(s, Event.REFUSED): S.IDLE for s in _AT_REST},
    (S.DOWNLOADING, Event.DOWNLOADED): S.VERIFYING,
    (S.DOWNLOADING, Event.FAILED): S.IDLE,
    (S.DOWNLOADING, Event.CANCELLED): S.IDLE,
    (S.VERIFYING, Event.VERIFIED): S.INSTALLING,
    (S.INSTALLING, Event.INSTALLED): S.LOADING,
    (S.LOADING, Event.LOADED): S.SELF_TEST,
    (S.SELF_TEST, Event.SELF_TEST_PASSED): S.COMMITTED,
    **{(s, Event.FAILED): S.ROLLING_BACK for s in _ROLLBACK_FROM},
    (S.ROLLING_BACK, Event.ROLLED_BACK): S.IDLE,
}
TRANSITIONS = MappingProxyType(_TABLE)

# Extraction into a cleared inactive slot is idempotent and the complete download is still on
# disk, so VERIFYING and INSTALLING start again from verification. LOADING and SELF_TEST do too:
# a crash there may be the model's doing (a runtime crash, out of memory), but a power cut during
# a long load is ordinary (a TensorRT engine build takes minutes on a Jetson), and failing a good
# update for one would strand the device until someone deploys again. The crash-loop bound
# (MAX_RESUMES, below) tells the two apart: a model that keeps killing the agent is rolled back.
_RESUME: dict[UpdateState, Resume] = {
    S.IDLE: Resume.SERVE_ACTIVE,
    S.COMMITTED: Resume.SERVE_ACTIVE,
    S.DOWNLOADING: Resume.RESUME_DOWNLOAD,
    S.VERIFYING: Resume.RESTART_FROM_VERIFY,
    S.INSTALLING: Resume.RESTART_FROM_VERIFY,
    S.LOADING: Resume.RESTART_FROM_VERIFY,
    S.SELF_TEST: Resume.RESTART_FROM_VERIFY,
    S.ROLLING_BACK: Resume.ROLL_BACK,
}
RESUME_TABLE = MappingProxyType(_RESUME)

# The state a resume re-enters; the journal is rewritten to it before the step runs.
RESUME_ENTRY = MappingProxyType(
    {
        Resume.RESUME_DOWNLOAD: S.DOWNLOADING,
        Resume.RESTART_FROM_VERIFY: S.VERIFYING,
        Resume.ROLL_BACK: S.ROLLING_BACK,
    }
)

# Resumes past the download one update may take; the next crash rolls it back (so an update is
# attempted MAX_RESUMES + 1 times in all).
MAX_RESUMES = 2


def next_state(state: UpdateState, event: Event) -> UpdateState:
    """The state after ``event`` in ``state``. Raises :class:`InvalidTransition` if not allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"event {event} is not allowed in state {state}") from None


def is_at_rest(state: UpdateState) -> bool:
    """True when no update is in flight (a new desired state may start one)."""
    return state in _AT_REST


def counts_as_resume(action: Resume) -> bool:
    """Whether taking ``action`` at start-up adds to the update's ``resumes``.

    A download only writes a ``.part`` file, so an agent stopped while downloading (a reboot, a
    power cut in the middle of a long download over a slow link) is no sign of a crash loop, and
    the download goes on however often that happens. Verifying and installing do count: they run
    the bundle's bytes through tar and the verifier.
    """
    return action is Resume.RESTART_FROM_VERIFY


def resume_action(
    state: UpdateState, resumes: int, max_resumes: int = MAX_RESUMES, clean_stop: bool = False
) -> Resume:
    """How to go on after a start-up that found the journal in ``state``.

    ``resumes`` counts the start-ups that already resumed this same update past its download
    (see :func:`counts_as_resume`); once it reaches ``max_resumes`` the update rolls back instead,
    so an update that keeps killing the agent can't crash-loop the device. ``clean_stop`` says the
    agent stopped in order (:mod:`agent.update.clean_stop`); since a load or self-test cut short
    by a crash restarts from verification too, it decides nothing here any more (the reconciler
    only words its report by it), and an orderly stop counts towards the bound like a crash.
    """
    del clean_stop  # see above: kept so that callers say what they know
    action = RESUME_TABLE[state]
    if counts_as_resume(action) and resumes >= max_resumes:
        return Resume.ROLL_BACK
    return action
