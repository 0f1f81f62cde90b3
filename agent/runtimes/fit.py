"""How many runtime threads a model gets when nothing sets the number: measured at load.

A small model's operators finish in microseconds. Split over several intra-op threads, each
operator then pays for handing out and collecting its shares (and each run for waking threads
that stopped spinning when the last one returned, the agent's default), which costs more than
the work shared: on a 2-core x86 the digits CNN ran in about 0.11 ms on two threads and 0.06 ms
on one. A large model gains from every core. So when a model's run on
its probe input takes under :data:`FIT_BELOW` seconds with all its threads, the agent loads it
once more on one thread, times both and keeps the faster, by at least :data:`GAIN`; the other
copy is closed at once. A probe run that fails keeps the first load (the self-test then says why).
A runtime whose thread count means nothing (TensorRT: :attr:`RuntimeAdapter.uses_threads`) is
left as loaded: a second engine load would cost time and accelerator memory for nothing.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import numpy as np

from agent.runtimes.base import RuntimeAdapter

log = logging.getLogger(__name__)

FIT_BELOW = 0.001  # seconds a run: above it, the model keeps every thread without a second load
GAIN = 0.9  # one thread must take at most this share of the time on all of them
RUNS = 25


def median_run(
    adapter: RuntimeAdapter,
    feed: dict[str, np.ndarray],
    runs: int = RUNS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The median of ``runs`` timed runs on ``feed``, after one untimed warm-up run."""
    adapter.infer(feed)
    times = []
    for _ in range(runs):
        start = clock()
        adapter.infer(feed)
        times.append(clock() - start)
    return statistics.median(times)


def fit_threads(
    adapter: RuntimeAdapter,
    threads: int,
    reload: Callable[[int], RuntimeAdapter],
    feed: dict[str, np.ndarray],
    timer: Callable[[RuntimeAdapter, dict[str, np.ndarray]], float] = median_run,
    label: str = "the model",
) -> tuple[RuntimeAdapter, int]:
    """``adapter`` (loaded with ``threads``) or a one-thread copy from ``reload(1)``, whichever
    runs ``feed`` faster as above; returns it with its thread count."""
    if threads <= 1 or not adapter.uses_threads:
        return adapter, threads
    try:
        many = timer(adapter, feed)
    except Exception as exc:  # the runtime's own error: the self-test reports it properly
        log.debug("thread fit skipped: the probe run failed: %s", exc)
        return adapter, threads
    if many >= FIT_BELOW:
        return adapter, threads
    try:
        single = reload(1)
    except Exception as exc:
        log.debug("thread fit skipped: a one-thread load failed: %s", exc)
        return adapter, threads
    try:
        one = timer(single, feed)
    except Exception as exc:
        log.debug("thread fit skipped: the one-thread probe run failed: %s", exc)
        single.close()
        return adapter, threads
    if one <= GAIN * many:
        log.info(
            "%s: one runtime thread (%.3f ms a run, %.3f ms on %d)", label, one * 1e3, many * 1e3, threads
        )
        adapter.close()
        return single, 1
    single.close()
    return adapter, threads
