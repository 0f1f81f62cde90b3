"""The thread that runs updates, so that MQTT's network thread never waits for one.

Desired states are coalesced: only the newest pending one matters, and a newer generation cancels
a download in progress. An update that failed in a retryable way (network) is tried again after a
backoff unless something newer arrives first.
"""

from __future__ import annotations

import logging
import threading

from agent.backoff import Backoff
from agent.contracts.state import DesiredState
from agent.update.reconciler import Outcome, Reconciler

log = logging.getLogger(__name__)


class UpdateWorker:
    def __init__(self, reconciler: Reconciler, retry: Backoff | None = None) -> None:
        self.reconciler = reconciler
        self.retry = retry or Backoff(initial=15.0, maximum=600.0)
        self._cond = threading.Condition()
        self._pending: DesiredState | None = None
        self._current_gen: int | None = None  # the generation being worked on
        self._cancel = threading.Event()
        self._stopping = False
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._main, name="edge-agent-update", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, desired: DesiredState) -> None:
        """Queue ``desired`` (non-blocking; safe from any thread). Older generations than the one
        pending are dropped; a newer one than the one running cancels its download."""
        with self._cond:
            if self._pending is None or desired.generation >= self._pending.generation:
                self._pending = desired
            if self._current_gen is not None and desired.generation > self._current_gen:
                self._cancel.set()
            self._idle.clear()
            self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current step (a download is interrupted; it resumes next start).
        Returns whether the thread ended within ``timeout``."""
        with self._cond:
            self._stopping = True
            self.reconciler.shutting_down.set()
            self._cancel.set()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or running (for tests and orderly shutdown)."""
        return self._idle.wait(timeout)

    def _main(self) -> None:
        with self._cond:
            self._current_gen = self.reconciler.journal.generation
        try:
            self.reconciler.resume(self._cancel)
        except Exception:
            log.exception("resuming the interrupted update failed")
        with self._cond:
            self._current_gen = None
        attempt = 0
        retry_of: DesiredState | None = None
        while (desired := self._next(retry_of, attempt)) is not None:
            try:
                outcome = self.reconciler.apply(desired, self._cancel)
            except Exception:
                log.exception("applying generation %d failed", desired.generation)
                outcome = Outcome.RETRY
            with self._cond:
                self._current_gen = None
            if outcome is Outcome.RETRY:
                same = retry_of is not None and retry_of.generation == desired.generation
                attempt, retry_of = (attempt + 1 if same else 1), desired
            else:
                attempt, retry_of = 0, None

    def _next(self, retry_of: DesiredState | None, attempt: int) -> DesiredState | None:
        """The next desired state to apply (``retry_of`` again after a backoff, unless something
        newer arrives first), or ``None`` when stopping."""
        with self._cond:
            if retry_of is not None and self._pending is None and not self._stopping:
                delay = self.retry.delay(attempt - 1)
                log.info("retrying generation %d in %.0fs", retry_of.generation, delay)
                self._cond.wait_for(lambda: self._pending is not None or self._stopping, timeout=delay)
                if self._pending is None:
                    self._pending = retry_of
            while self._pending is None and not self._stopping:
                self._idle.set()
                self._cond.wait()
            desired, self._pending = self._pending, None
            if self._stopping or desired is None:
                self._idle.set()
                return None
            self._current_gen = desired.generation
            self._cancel.clear()
            return desired
