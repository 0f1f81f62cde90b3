"""The circuit breaker around the cloud endpoint: one declarative table over an explicit clock.

::

    CLOSED ──failures reach the threshold──► OPEN ──cooldown over──► HALF_OPEN
      ▲  └─success resets the count            ▲                      │ one probe
      └────────────── probe succeeded ─────────┼──────────────────────┤
                                               └── probe failed ──────┘

While OPEN nothing is sent; after ``cooldown`` seconds one request goes through as a probe
(HALF_OPEN) and its outcome closes or re-opens the breaker. Each re-open doubles the cooldown,
up to ``max_cooldown``, so a long outage costs one probe every few seconds, not a stream.
Pure: the caller passes the time; nothing here sleeps or locks.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Event(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # below the threshold
    FAILURE_LIMIT = "failure_limit"  # the failure that reaches the threshold
    COOLDOWN_OVER = "cooldown_over"


S, E = BreakerState, Event
TRANSITIONS = MappingProxyType(
    {
        (S.CLOSED, E.SUCCESS): S.CLOSED,
        (S.CLOSED, E.FAILURE): S.CLOSED,
        (S.CLOSED, E.FAILURE_LIMIT): S.OPEN,
        (S.OPEN, E.COOLDOWN_OVER): S.HALF_OPEN,
        # A request sent before the breaker opened may still report; it changes nothing.
        (S.OPEN, E.SUCCESS): S.OPEN,
        (S.OPEN, E.FAILURE): S.OPEN,
        (S.OPEN, E.FAILURE_LIMIT): S.OPEN,
        (S.HALF_OPEN, E.SUCCESS): S.CLOSED,
        (S.HALF_OPEN, E.FAILURE): S.OPEN,
        (S.HALF_OPEN, E.FAILURE_LIMIT): S.OPEN,
    }
)


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 2.0,
        max_cooldown: float = 30.0,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.state = S.CLOSED
        self.failures = 0
        self.cooldown = cooldown
        self.opened_at = 0.0
        self._probing = False

    def _post(self, event: Event, now: float) -> None:
        new = TRANSITIONS[(self.state, event)]
        if new is S.OPEN and self.state is not S.OPEN:
            if self.state is S.HALF_OPEN:
                self.cooldown = min(self.max_cooldown, self.cooldown * 2)
            self.opened_at = now
        if new is S.CLOSED:
            self.cooldown = self.base_cooldown
        if new is not S.HALF_OPEN:
            self._probing = False
        self.state = new

    def allow(self, now: float) -> bool:
        """Whether a request may go to the endpoint now. In HALF_OPEN only the first caller
        (the probe) is let through until its outcome is recorded."""
        if self.state is S.OPEN and now - self.opened_at >= self.cooldown:
            self._post(E.COOLDOWN_OVER, now)
        if self.state is S.CLOSED:
            return True
        if self.state is S.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, ok: bool, now: float) -> None:
        """The outcome of one request that :meth:`allow` let through."""
        if ok:
            self.failures = 0
            self._post(E.SUCCESS, now)
            return
        self.failures += 1
        self._post(E.FAILURE_LIMIT if self.failures >= self.threshold else E.FAILURE, now)
        if self.state is S.OPEN:
            self.failures = 0
