"""What a simulated device says it measured over one window (pure, given its random draws).

Each device has its own steady figures (request rate, latency), fixed by the seed and its id; a
window adds a little noise from the caller's random source. A version other than the first one
the device ran shows the faults' regressions: p95 and p99 latency times ``latency_regression``,
``prediction_shift`` of the predicted-class mass moved onto one class, ``error_rate`` of the
requests failed. A device serving no model handled no requests.
"""

from __future__ import annotations

import random
from functools import lru_cache

from agent.contracts.telemetry import Latency, Telemetry
from edgectl.simulate.faults import Faults, unit

CLASSES = 10  # the digits example's classes
BASE_ERROR_RATE = 0.001


@lru_cache(maxsize=64)
def class_mix(seed: int) -> tuple[float, ...]:
    """The fleet's predicted-class distribution before any shift (sums to 1)."""
    weights = [1.0 + 0.5 * unit(seed, "class", str(i)) for i in range(CLASSES)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def shifted_mix(seed: int, shift: float) -> tuple[float, ...]:
    """``class_mix`` with ``shift`` of its mass moved onto one class the seed picks."""
    base = class_mix(seed)
    if shift <= 0:
        return base
    target = int(unit(seed, "shift-class") * CLASSES)
    return tuple((1 - shift) * p + (shift if i == target else 0.0) for i, p in enumerate(base))


def counts(total: int, mix: tuple[float, ...]) -> dict[str, int]:
    """``total`` split by ``mix``, largest remainders first, so the counts sum to ``total``."""
    raw = [total * p for p in mix]
    out = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)[: total - sum(out)]:
        out[i] += 1
    return {str(i): n for i, n in enumerate(out)}


def measure(
    device_id: str,
    model: str | None,
    *,
    new_version: bool,
    faults: Faults,
    window_s: float,
    ts: float,
    rng: random.Random,
) -> Telemetry:
    """The device's :class:`Telemetry` for the window ending at ``ts``."""
    seed = faults.seed
    if model is None:
        return Telemetry(device_id=device_id, ts=ts, window_s=window_s, requests=0, queue_depth=0)
    rate = 5.0 + 15.0 * unit(seed, "rps", device_id)
    requests = max(0, int(rate * window_s * (0.8 + 0.4 * rng.random())))
    error_rate = BASE_ERROR_RATE + (faults.error_rate if new_version else 0.0)
    errors = min(requests, int(requests * error_rate + rng.random()))
    p50 = (4.0 + 8.0 * unit(seed, "latency", device_id)) * (0.9 + 0.2 * rng.random())
    p95, p99 = p50 * 1.9, p50 * 2.5
    if new_version:
        p95 *= faults.latency_regression
        p99 *= faults.latency_regression
    mix = shifted_mix(seed, faults.prediction_shift) if new_version else class_mix(seed)
    return Telemetry(
        device_id=device_id,
        ts=ts,
        window_s=window_s,
        model=model,
        requests=requests,
        errors=errors,
        throughput_rps=round(requests / window_s, 3) if window_s > 0 else None,
        latency=Latency(p50_ms=round(p50, 3), p95_ms=round(p95, 3), p99_ms=round(p99, 3)),
        queue_depth=int(rng.random() * 3),
        offload_ratio=round(0.05 * unit(seed, "offload", device_id) * rng.random(), 4),
        cpu_percent=round(10.0 + 40.0 * rng.random(), 1),
        memory_mb=round(180.0 + 40.0 * unit(seed, "memory", device_id), 1),
        classes=counts(requests - errors, mix),
    )
