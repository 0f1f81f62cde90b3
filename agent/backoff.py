"""Exponential backoff with jitter, as a pure value: the caller owns the clock and the sleeping."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``attempt`` (0-based): ``initial * factor**attempt``, capped at
    ``maximum``, then spread by ``±jitter`` so a fleet that lost its server does not come back in
    lockstep."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt))
        return max(0.0, base * (1.0 + self.jitter * (2.0 * rand() - 1.0)))
