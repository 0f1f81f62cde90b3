"""The periodic telemetry job: roll raw windows up into minutes, then apply the retention.

One thread per server; every ``interval_s`` it runs :meth:`TelemetryJobs.run_once`, each step in
its own short transaction (a batch of rows at a time), so the bridge's writes never wait long.
Tests call :meth:`run_once` with an explicit time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from fleet_server.telemetry.rollup import BATCH, prune, roll_up

log = logging.getLogger(__name__)


class TelemetryJobs:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        raw_keep: timedelta = timedelta(hours=24),
        rollup_keep: timedelta = timedelta(days=30),
        interval_s: float = 60.0,
        lag_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self.raw_keep, self.rollup_keep = raw_keep, rollup_keep
        self.interval_s, self.lag_s = interval_s, lag_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-telemetry-jobs", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self, now: datetime | None = None) -> tuple[int, int, int]:
        """Roll up everything due at ``now`` (default: the clock), then prune. Returns (raw rows
        summed, raw rows deleted, rollups deleted)."""
        now = now or self._clock()
        summed = 0
        while not self._stop.is_set():
            with self._sessions.begin() as s:
                n = roll_up(s, now, self.lag_s, BATCH)
            summed += n
            if n < BATCH:
                break
        with self._sessions.begin() as s:
            raw, rolled = prune(s, now, self.raw_keep, self.rollup_keep)
        return summed, raw, rolled

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                summed, raw, rolled = self.run_once()
                if summed or raw or rolled:
                    log.debug("telemetry: %d rolled up, %d raw and %d rollups pruned", summed, raw, rolled)
            except Exception as exc:
                first = str(exc).split("\n", 1)[0]
                log.error("telemetry rollup failed: %s: %s", type(exc).__name__, first)
