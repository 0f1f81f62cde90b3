"""The closed-loop load: N workers, each with its own connection, each sending one request after
another; a warm-up, then a fixed window in which every completed request is timed.

A worker is a ``Caller``: made once per worker thread (so it owns its connection) and called
once per request; it raises on a failed request. Threads suit every row: the calls that wait
(sockets, gRPC, ``InferenceSession.run``) release the GIL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Caller = Callable[[], None]
MAX_ERRORS_PER_WORKER = 20  # a worker that keeps failing stops instead of spinning on errors


@dataclass
class Point:
    """What one (row, concurrency) point measured; latencies in milliseconds."""

    concurrency: int
    duration_s: float
    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    throughput_rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, object]:
        return {
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "throughput_rps": _round(self.throughput_rps, 1),
            "p50_ms": _round(self.p50_ms, 3),
            "p99_ms": _round(self.p99_ms, 3),
            "mean_ms": _round(self.mean_ms, 3),
        }


def _round(v: float | None, n: int) -> float | None:
    return None if v is None else round(v, n)


def run_point(make_caller: Callable[[], Caller], concurrency: int, warmup: float, duration: float) -> Point:
    """Run ``concurrency`` workers for ``warmup`` + ``duration`` seconds; requests that complete
    inside the window count (throughput = count / window, latencies are theirs); no worker starts
    a request after the window closes. Workers are made (connections opened)
    before the clock starts. Raises what ``make_caller`` raises."""
    callers = [make_caller() for _ in range(concurrency)]
    lat: list[list[float]] = [[] for _ in callers]
    errs: list[list[str]] = [[] for _ in callers]
    start = threading.Barrier(concurrency + 1)
    window: list[float] = []

    def work(i: int) -> None:
        call, mine, bad = callers[i], lat[i], errs[i]
        start.wait()
        t_on, t_off = window
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= t_off:
                return
            try:
                call()
            except Exception as exc:  # any failure of the server under test is a counted error
                bad.append(f"{type(exc).__name__}: {exc}"[:300])
                if len(bad) >= MAX_ERRORS_PER_WORKER:
                    return
                continue
            t1 = perf()
            # Counted by completion time, whenever it started: at concurrency 16 a slow row's
            # requests take seconds, and counting only those started inside the window would
            # under-count its throughput by one latency's share of the window.
            if t_on <= t1 <= t_off:
                mine.append((t1 - t0) * 1000.0)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window.extend([now + warmup, now + warmup + duration])
    start.wait()
    for t in threads:
        t.join()
    for c in callers:
        close = getattr(c, "close", None)
        if close is not None:
            close()
    all_lat = [x for xs in lat for x in xs]
    all_err = [e for es in errs for e in es]
    p = Point(concurrency=concurrency, duration_s=duration, requests=len(all_lat), errors=len(all_err))
    p.first_error = all_err[0] if all_err else None
    if all_lat:
        arr = np.asarray(all_lat)
        p.throughput_rps = len(all_lat) / duration
        p.p50_ms = float(np.percentile(arr, 50))
        p.p99_ms = float(np.percentile(arr, 99))
        p.mean_ms = float(arr.mean())
        p.latencies_ms = all_lat
    return p
