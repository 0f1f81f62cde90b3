"""The open-loop load: requests scheduled at a fixed rate whatever the answers, over many
keep-alive connections, each answer timed from the moment its request was due.

Request ``k`` is due at ``start + k / rate``. Each of ``connections`` threads takes the next due
request, sleeps until it is due and sends it on its own connection. Latency is measured from the
due time, not from the send, so a client that falls behind (every connection busy) shows up as
latency rather than as a lower offered load (no coordinated omission); how late requests were sent
is recorded too, to tell client lag from server delay. A request counts when it was due inside
the window after the warm-up.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.serving.http_client import Connection, HttpError

HOST = "127.0.0.1"
SERVED_BY = "x-edgefleet-served-by"


@dataclass(frozen=True)
class Outcome:
    """One request: HTTP status (0: no answer), latency from its due time, where it was served
    (the agent's ``X-EdgeFleet-Served-By``; ``None`` when absent) and how late it was sent."""

    status: int
    latency_ms: float
    served_by: str | None
    send_lag_ms: float
    error: str | None = None


@dataclass
class OpenLoopRun:
    rate_rps: float
    duration_s: float
    connections: int
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self, budget_ms: float) -> dict[str, object]:
        """The figures of one set-up: answered (200) requests, those within ``budget_ms``, goodput
        (within budget per second), where they were served, shed (503) and failed requests, and
        p50/p99 latency of the admitted (answered) ones."""
        out = self.outcomes
        ok = [o for o in out if o.status == 200]
        within = [o for o in ok if o.latency_ms <= budget_ms]
        cloud = sum(1 for o in ok if o.served_by == "cloud")
        lat = np.asarray([o.latency_ms for o in ok]) if ok else None
        lag = np.asarray([o.send_lag_ms for o in out]) if out else None
        errors = [o for o in out if o.status not in (200, 503)]
        return {
            "offered": len(out),
            "offered_rps": round(len(out) / self.duration_s, 1),
            "answered": len(ok),
            "within_budget": len(within),
            "within_budget_share": None if not ok else round(len(within) / len(ok), 4),
            "within_budget_of_offered": None if not out else round(len(within) / len(out), 4),
            "goodput_rps": round(len(within) / self.duration_s, 1),
            "served_by_cloud": cloud,
            "cloud_share": None if not ok else round(cloud / len(ok), 4),
            "shed": sum(1 for o in out if o.status == 503),
            "errors": len(errors),
            "first_error": next((o.error for o in errors if o.error), None),
            "p50_ms": None if lat is None else round(float(np.percentile(lat, 50)), 3),
            "p99_ms": None if lat is None else round(float(np.percentile(lat, 99)), 3),
            "send_lag_p99_ms": None if lag is None else round(float(np.percentile(lag, 99)), 3),
        }


def run_open_loop(
    port: int,
    requests: list[bytes],
    rate: float,
    warmup: float,
    duration: float,
    connections: int = 64,
    timeout: float = 10.0,
) -> OpenLoopRun:
    """Offer ``rate`` requests per second for ``warmup`` + ``duration`` seconds (``requests``
    rotate); return the outcomes of those due inside the window. Never raises for a failed
    request: it is an outcome with status 0."""
    counter = itertools.count()  # next() on it is atomic under the GIL: each index taken once
    conns = [Connection(HOST, port, timeout=timeout) for _ in range(connections)]
    results: list[list[tuple[int, Outcome]]] = [[] for _ in conns]
    start = threading.Barrier(connections + 1)
    clock: list[float] = []

    def work(i: int) -> None:
        conn, mine = conns[i], results[i]
        perf = time.perf_counter
        start.wait()
        t0 = clock[0]
        end = t0 + warmup + duration
        while True:
            k = next(counter)
            due = t0 + k / rate
            if due >= end:
                return
            wait = due - perf()
            if wait > 0:
                time.sleep(wait)
            sent = perf()
            status, served, error = 0, None, None
            try:
                r = conn.send(requests[k % len(requests)])
                status, served = r.status, r.headers.get(SERVED_BY)
                if status not in (200, 503):
                    error = f"HTTP {status}: {r.body[:200]!r}"
            except (OSError, HttpError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            done = perf()
            if due >= t0 + warmup:
                mine.append((k, Outcome(status, (done - due) * 1000, served, (sent - due) * 1000, error)))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    clock.append(time.perf_counter() + 0.05)
    start.wait()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    run = OpenLoopRun(rate_rps=rate, duration_s=duration, connections=connections)
    run.outcomes = [o for _, o in sorted((x for xs in results for x in xs), key=lambda x: x[0])]
    return run
