"""One model's request queue and the thread that runs it: dynamic batching behind the service.

Requests queue in a bounded queue; one worker thread takes them in order and runs them on the
model, alone or stacked along the batch axis as :class:`~agent.serving.batch_policy.BatchPolicy`
decides. One thread per model is the right shape for a device: the runtime's own intra-op threads
use the cores, and two runs side by side would only fight over them.

- A full queue refuses at once (:class:`Overloaded`, with a retry hint from the expected wait):
  a growing queue only turns into time-outs.
- A request whose deadline passed while it waited is not run (:class:`DeadlineExceeded`).
- Only requests whose inputs agree beyond the batch axis are stacked; a batched run that fails is
  run again request by request, so one request's problem never fails its neighbours.
- An idle model whose requests take under ``inline_below`` seconds runs the request on the
  caller's thread (:meth:`ModelScheduler.try_inline`): no thread hand-off at low load, never two
  runs at once.
- The worker thread ends after ``idle_exit`` seconds without work and starts again on the next
  request, so an unloaded model's scheduler leaves no thread behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from agent.contracts.manifest import Manifest
from agent.runtimes.base import RuntimeAdapter
from agent.serving.batch_policy import BatchPolicy
from agent.serving.errors import BadRequest, DeadlineExceeded, Overloaded

log = logging.getLogger(__name__)

RECENT_RUNS = 32  # per-row run times kept for the tail of the service time


@dataclass(frozen=True)
class SchedulerSettings:
    """Limits of one model's queue. ``max_batch`` 1 turns batching off."""

    max_batch: int = 8
    max_queue_delay: float = 0.002  # seconds to wait for a fuller batch, when batching pays
    queue_limit: int = 64  # requests waiting, beyond which new ones are refused
    idle_exit: float = 2.0
    # An idle model whose requests take less than this runs a request on the caller's thread:
    # handing a 0.05 ms model to the worker thread and back would cost more than running it.
    inline_below: float = 0.002
    # A service-time measurement older than this is stale: an idle model then runs the next
    # request locally whatever the estimate says, and that run replaces the estimate.
    stale_after: float = 1.0


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    future: Future[dict[str, np.ndarray]]
    deadline: float | None
    rows: int
    key: tuple[object, ...]


# A request's outcome: its future, its outputs, or the error to raise instead.
_Done = tuple["Future[dict[str, np.ndarray]]", dict[str, np.ndarray], BaseException | None]


def _signature(inputs: dict[str, np.ndarray]) -> tuple[object, ...]:
    return tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()))


class ModelScheduler:
    def __init__(
        self,
        adapter: RuntimeAdapter,
        manifest: Manifest,
        settings: SchedulerSettings,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapter = adapter
        self.settings = settings
        self.label = label
        self._clock = clock
        self._batch_axis = all(
            len(t.shape) > 0 and t.shape[0] < 0 for t in (*manifest.inputs, *manifest.outputs)
        )
        self.batchable = self._batch_axis and settings.max_batch > 1
        self.policy = BatchPolicy(
            max_batch=settings.max_batch if self.batchable else 1, max_delay=settings.max_queue_delay
        )
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._single: float | None = None  # moving average of one unbatched request's run time
        self._recent: deque[float] = deque(maxlen=RECENT_RUNS)  # per-row run times, newest last
        self._running = 0  # requests taken off the queue and not finished
        self._warm = False  # the first run (allocations, kernel selection) is not timed
        self.last_run = clock()  # when the latest run finished

    # -- what the offload policy reads ---------------------------------------------------------

    def full(self) -> bool:
        with self._cond:
            return len(self._queue) >= self.settings.queue_limit

    def depth(self) -> int:
        """Requests waiting in the queue now (a read of a deque's length: no lock needed)."""
        return len(self._queue)

    def service_time(self, quantile: float | None = None) -> float:
        """Recent run time of one request, seconds (0 before the first run). With ``quantile``
        (0 to 1), that quantile of the last :data:`RECENT_RUNS` runs instead of the mean: an
        admission that must keep a latency budget looks at the tail (a device whose runs jitter,
        from throttling or a neighbour, misses the budget on its slow runs, not its mean ones)."""
        if quantile is not None:
            with self._cond:
                recent = sorted(self._recent)
            if recent:
                return recent[min(len(recent) - 1, int(quantile * len(recent)))]
        per_row = self.policy.time_per_row()
        return per_row if per_row is not None else (self._single or 0.0)

    def estimated_wait(self, quantile: float | None = None) -> float:
        """How long a request arriving now would wait before it runs: (queued + running) x
        service time (its ``quantile``, see :meth:`service_time`). The running batch counts
        whole: it may have just started."""
        service = self.service_time(quantile)
        with self._cond:
            return (len(self._queue) + self._running) * service

    # -- the queue -----------------------------------------------------------------------------

    def submit(
        self, inputs: dict[str, np.ndarray], timeout: float | None = None
    ) -> Future[dict[str, np.ndarray]]:
        """Queue one request. Raises :class:`Overloaded` when the queue is full."""
        rows = next(iter(inputs.values())).shape[0] if self.batchable and inputs else 1
        item = _Item(
            inputs=inputs,
            future=Future(),
            deadline=None if timeout is None else self._clock() + timeout,
            rows=max(1, int(rows)),
            key=_signature(inputs) if self.batchable else (),
        )
        with self._cond:
            if self._stopped:
                raise Overloaded("the model is being unloaded", retry_after=0.1)
            if len(self._queue) >= self.settings.queue_limit:
                wait = max(0.05, self._estimated_wait_locked())
                raise Overloaded(
                    f"{len(self._queue)} requests are waiting for {self.label or 'the model'}",
                    retry_after=wait,
                )
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"infer {self.label}", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        return item.future

    def try_inline(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Run the request now on this thread if the model is idle and quick; ``None`` when it
        should be queued instead. Raises :class:`BadRequest` like a queued run."""
        with self._cond:
            quick = 0 < self.service_time() <= self.settings.inline_below
            if not quick or self._stopped or self._queue or self._running:
                return None
            self._running = 1
        try:
            start = time.perf_counter()
            out = self._infer(inputs)
            self._observe_single(
                next(iter(inputs.values())).shape[0] if self.batchable else 1, time.perf_counter() - start
            )
            return out
        finally:
            with self._cond:
                self._running = 0
                if self._queue:
                    self._cond.notify()

    def needs_remeasure(self) -> bool:
        """Idle, and the latest run finished over ``stale_after`` seconds ago."""
        with self._cond:
            busy = bool(self._queue) or bool(self._running)
        return not busy and self._clock() - self.last_run > self.settings.stale_after

    def _observe(self, rows: int, took: float) -> None:
        now = self._clock()
        stale = now - self.last_run - took > self.settings.stale_after
        self.last_run = now
        self.policy.observe(rows, took, replace=stale)
        with self._cond:
            if stale:
                self._recent.clear()
            self._recent.append(took / max(1, rows))

    def _observe_single(self, rows: int, took: float) -> None:
        if not self._warm:
            self._warm = True
            self.last_run = self._clock()
            return
        self._observe(max(1, int(rows)), took)
        self._single = took if self._single is None else 0.8 * self._single + 0.2 * took

    def _estimated_wait_locked(self) -> float:
        return (len(self._queue) + self._running) * self.service_time()

    def retune(self, settings: SchedulerSettings) -> None:
        """New limits from now on (the batch policy keeps what it measured)."""
        with self._cond:
            self.settings = settings
            self.batchable = self._batch_axis and settings.max_batch > 1
            self.policy.retune(settings.max_batch if self.batchable else 1, settings.max_queue_delay)

    def stop(self) -> None:
        """Refuse new requests; the queued ones still run."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- the worker ----------------------------------------------------------------------------

    def _take(self) -> list[_Item] | None:
        with self._cond:
            idle_until = self._clock() + self.settings.idle_exit
            while not self._queue or self._running:  # running: an inline run on another thread
                left = idle_until - self._clock()
                if not self._queue and (self._stopped or left <= 0):
                    self._thread = None
                    return None
                self._cond.wait(max(left, 0.001))
            plan = self.policy.plan(sum(i.rows for i in self._queue))
            if plan.wait > 0:
                until = self._clock() + plan.wait
                while sum(i.rows for i in self._queue) < plan.rows and not self._stopped:
                    left = until - self._clock()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            while self._queue and rows + self._queue[0].rows <= plan.rows and self._queue[0].key == first.key:
                item = self._queue.popleft()
                batch.append(item)
                rows += item.rows
            self._running = len(batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            now = self._clock()
            live = []
            for item in batch:
                if item.deadline is not None and now > item.deadline:
                    item.future.set_exception(DeadlineExceeded("the request waited past its deadline"))
                elif item.future.set_running_or_notify_cancel():
                    live.append(item)
            done = self._execute(live) if live else []
            # Not running any more before anyone hears so: a caller woken by its result may
            # send the next request at once, and must not find this batch counted as running.
            with self._cond:
                self._running = 0
            for future, out, exc in done:
                if exc is None:
                    future.set_result(out)
                else:
                    future.set_exception(exc)

    def _execute(self, batch: list[_Item]) -> list[_Done]:
        """Run ``batch``; each request's result or error, for :meth:`_run` to deliver."""
        if len(batch) == 1:
            item = batch[0]
            start = time.perf_counter()
            try:
                out = self._infer(item.inputs)
            except BaseException as exc:  # every failure goes to the caller, the thread lives on
                return [(item.future, {}, exc)]
            self._observe_single(item.rows, time.perf_counter() - start)
            return [(item.future, out, None)]
        names = list(batch[0].inputs)
        stacked = {n: np.concatenate([i.inputs[n] for i in batch], axis=0) for n in names}
        rows = sum(i.rows for i in batch)
        start = time.perf_counter()
        try:
            out = self._infer(stacked)
        except Exception:  # isolate whichever request the model refused
            return [d for item in batch for d in self._execute([item])]
        self._observe(rows, time.perf_counter() - start)
        done: list[_Done] = []
        offset = 0
        for item in batch:
            done.append((item.future, {k: v[offset : offset + item.rows] for k, v in out.items()}, None))
            offset += item.rows
        return done

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.adapter.infer(inputs)
        except ValueError as exc:  # the adapter's word for a tensor that doesn't fit
            raise BadRequest(str(exc)) from exc
