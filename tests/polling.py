"""The one polling helper of the test suite: wait until something becomes true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "", interval: float = 0.05
) -> Any:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, and return that.

    Raises :class:`AssertionError` after ``timeout`` seconds, naming ``what`` (or ``check``) and
    the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}; last: {last!r:.2000}")
