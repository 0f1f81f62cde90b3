"""tests.polling.wait_until: returns the first truthy value, or fails naming what it waited for."""

from __future__ import annotations

import pytest

from tests.polling import wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, [], {"state": "DONE"}])
    assert wait_until(lambda: next(answers), timeout=5, interval=0) == {"state": "DONE"}


def test_times_out_naming_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.1s waiting for the deployment; last: \[\]"):
        wait_until(lambda: [], timeout=0.1, what="the deployment", interval=0.01)
