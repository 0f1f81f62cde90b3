"""The report sequence of one simulated update, walked through the agent's own transition table
(:mod:`agent.update.machine`), so a simulated device reports exactly the states, in exactly the
order, a real agent does (pure).

A successful update reports ``DOWNLOADING → VERIFYING → INSTALLING → LOADING → SELF_TEST →
COMMITTED``; one that fails reports the steps up to the failing one, then the table's way out
with the error: straight to ``IDLE`` from a download, else ``ROLLING_BACK`` and then ``IDLE``.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.contracts.state import ErrorCode, ReportedError, UpdateState
from agent.update.machine import Event, next_state
from edgectl.simulate.faults import FAIL_AT

S = UpdateState
_FORWARD = (Event.DOWNLOADED, Event.VERIFIED, Event.INSTALLED, Event.LOADED, Event.SELF_TEST_PASSED)
_MESSAGES = {
    ErrorCode.SELF_TEST_FAILED: "simulated: outputs differ from the bundle's expected outputs",
    ErrorCode.LOAD_FAILED: "simulated: the runtime refused the model",
    ErrorCode.HASH_MISMATCH: "simulated: the bundle's sha256 is not the one declared",
    ErrorCode.DOWNLOAD_FAILED: "simulated: the download failed",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One report of the update: the state, the error it carries, and whether it is the one
    that makes the new model active (``COMMITTED``)."""

    state: UpdateState
    error: ReportedError | None = None
    commits: bool = False

    @property
    def final(self) -> bool:
        return self.state in (S.COMMITTED, S.IDLE)


def error_for(code: ErrorCode, detail: str = "") -> ReportedError:
    return ReportedError(str(code), detail or _MESSAGES.get(code, f"simulated: {code}"))


def update_steps(
    failure: ErrorCode | None, detail: str = "", start: UpdateState = S.IDLE
) -> tuple[Step, ...]:
    """The reports of an update from ``start`` (a state at rest), failing with ``failure`` at
    its step (:data:`~edgectl.simulate.faults.FAIL_AT`) or succeeding when it is ``None``.
    Raises ``InvalidTransition`` if the agent's table has no such way (a bug here)."""
    fail_at = None if failure is None else FAIL_AT[failure]
    state = next_state(start, Event.START)
    steps = [Step(state)]
    for event in _FORWARD:
        if state is fail_at:
            assert failure is not None
            err = error_for(failure, detail)
            state = next_state(state, Event.FAILED)
            steps.append(Step(state, err))
            if state is S.ROLLING_BACK:
                state = next_state(state, Event.ROLLED_BACK)
                steps.append(Step(state, err))
            return tuple(steps)
        state = next_state(state, event)
        steps.append(Step(state, commits=state is S.COMMITTED))
    return tuple(steps)


def already_active_step(start: UpdateState) -> Step:
    """The one report for a desired model that is the one serving (or no model at all)."""
    return Step(next_state(start, Event.ALREADY_ACTIVE), commits=True)
