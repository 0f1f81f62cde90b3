"""The time the agent judges TUF expiry by, on boards whose clock may be wrong.

A board without a real-time clock boots with its clock behind (often at 1970) until NTP sets it.
The rule:

- The agent keeps a *floor*: a time the true time is known not to be before. It rises to the
  signing time of every timestamp metadata the agent verifies (the repository writes it in the
  signed ``x-edgefleet-issued`` field, by the server's clock), and it rises with the agent's
  monotonic clock while the agent runs; it is saved in ``<data dir>/trust/clock.json`` at every
  metadata refresh, so it survives restarts (the time a board spends switched off is lost, never
  invented).
- Expiry is judged at ``max(system clock, floor)``.

So a clock set back neither locks the device out (metadata still valid at the floor verifies, and
installs go on) nor lets a frozen repository through for longer than the floor allows: a replayed
timestamp expires against the floor as the agent keeps running. A clock set forward makes fresh
metadata look expired (``METADATA_EXPIRED``): the device keeps serving its model and installs
again once the clock is right; the floor never learns from the system clock, so a clock that was
once set forward leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agent.durable import atomic_write

log = logging.getLogger(__name__)


class TrustedClock:
    """``now()`` = max(``wall()``, floor advanced by ``monotonic()``); see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._wall = wall
        self._mono = monotonic
        self._floor = self._read()
        self._floor_mono = self._mono()

    def _read(self) -> float:
        try:
            value = float(json.loads(self.path.read_text())["floor"])
        except FileNotFoundError:
            return 0.0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("clock floor %s unreadable (%s); starting from 0", self.path, exc)
            return 0.0
        return value

    def floor(self) -> float:
        """The floor now (seconds since the epoch)."""
        return self._floor + max(0.0, self._mono() - self._floor_mono)

    def now(self) -> datetime:
        """The reference time for expiry checks."""
        return datetime.fromtimestamp(max(self._wall(), self.floor()), UTC)

    def behind(self) -> bool:
        """Whether the system clock is known to be behind (earlier than the floor)."""
        return self._wall() < self.floor()

    def observe(self, issued: datetime | None) -> None:
        """Raise the floor to ``issued`` (a verified timestamp's signing time) and save it."""
        floor = self.floor()
        if issued is not None:
            floor = max(floor, issued.timestamp())
        self._floor, self._floor_mono = floor, self._mono()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({"floor": floor}).encode())
