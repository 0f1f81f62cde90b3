"""The telemetry recorder: per-model figures of the current window, fed by the inference service.

The serving path calls :meth:`TelemetryRecorder.record` once per request. Its cost is kept small
and flat: the prediction statistics are computed before the lock from a bounded sample of the
outputs (at most :data:`SAMPLE_ELEMENTS` values per output, :data:`SAMPLE_ROWS` rows for the class
counts), and the update under the lock is a few integer and float additions into structures of
fixed size (a :class:`~agent.telemetry.histogram.LatencyHistogram`, class counts capped at
:data:`~agent.contracts.telemetry.MAX_CLASSES` keys). Nothing is logged per request.

:meth:`TelemetryRecorder.take` swaps the window out under the lock (O(1)) and hands it to the
publisher, which turns it into messages off the serving path.

Prediction statistics: when the model's first output is 2-D (``[batch, classes]``, at least two
classes), each row's argmax is counted as the predicted class; otherwise each output's values
are summarised (count, mean, std, min, max).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from agent.contracts.telemetry import MAX_CLASSES, MAX_OUTPUTS, Latency, OutputStats
from agent.telemetry.histogram import LatencyHistogram

SAMPLE_ELEMENTS = 1024  # values per output summarised per request (strided sample beyond)
SAMPLE_ROWS = 256  # rows of a class-score output counted per request
OTHER_CLASS = "other"  # where counts go once MAX_CLASSES - 1 distinct classes were seen


@dataclass
class _Moments:
    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def stats(self) -> OutputStats:
        if self.count == 0:
            return OutputStats()
        mean = self.total / self.count
        var = max(self.squares / self.count - mean * mean, 0.0)
        return OutputStats(count=self.count, mean=mean, std=math.sqrt(var), min=self.low, max=self.high)


@dataclass
class ModelWindow:
    """One model's figures over one window (what :meth:`TelemetryRecorder.take` hands out)."""

    requests: int = 0
    errors: int = 0
    answered: int = 0
    offloaded: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    classes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, _Moments] = field(default_factory=dict)

    def latency_ms(self) -> Latency | None:
        if self.latency.total == 0:
            return None
        p50, p95, p99 = (self.latency.percentile(q) for q in (50, 95, 99))
        return Latency(
            p50_ms=None if p50 is None else round(p50 * 1000, 4),
            p95_ms=None if p95 is None else round(p95 * 1000, 4),
            p99_ms=None if p99 is None else round(p99 * 1000, 4),
        )

    def offload_ratio(self) -> float | None:
        return None if self.answered == 0 else self.offloaded / self.answered

    def output_stats(self) -> dict[str, OutputStats] | None:
        return {k: m.stats() for k, m in self.outputs.items()} or None


def _class_counts(arr: np.ndarray) -> list[int] | None:
    """Per-class counts of a ``[batch, classes]`` score output's row argmax (at most
    :data:`SAMPLE_ROWS` rows), as ``[class, count, class, count, ...]``; ``None`` otherwise."""
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] == 0 or arr.dtype.kind not in "fiu":
        return None
    picked = np.argmax(arr[:SAMPLE_ROWS], axis=1)
    if picked.shape[0] <= 32:  # cheaper in Python than np.unique's sort for a few rows
        out_small: list[int] = []
        for v in picked.tolist():
            out_small += (v, 1)
        return out_small
    values, counts = np.unique(picked, return_counts=True)
    out: list[int] = []
    for v, n in zip(values.tolist(), counts.tolist(), strict=True):
        out += (v, n)
    return out


def _moments(arr: np.ndarray) -> tuple[int, float, float, float, float] | None:
    if arr.size == 0 or arr.dtype.kind not in "fiub":
        return None
    flat = arr.reshape(-1)
    if flat.size > SAMPLE_ELEMENTS:
        flat = flat[:: flat.size // SAMPLE_ELEMENTS + 1]
    x = flat.astype(np.float64, copy=False)
    total, squares = float(x.sum()), float(np.dot(x, x))
    low, high = float(x.min()), float(x.max())
    if not (math.isfinite(total) and math.isfinite(squares)):
        return None  # a NaN or inf in the output says nothing useful as a mean
    return int(x.size), total, squares, low, high


class TelemetryRecorder:
    """Per-model (``name:version``) figures of the current window; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: dict[str, ModelWindow] = {}

    def record(
        self,
        model: str,
        ok: bool,
        seconds: float | None = None,
        offloaded: bool = False,
        outputs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Count one request on ``model``: failed (``ok`` false) or answered in ``seconds``,
        on the device or offloaded, with the outputs it gave. Never raises."""
        classes: list[int] | None = None
        moments: list[tuple[str, tuple[int, float, float, float, float]]] = []
        if ok and outputs:
            try:
                first = next(iter(outputs.values()))
                classes = _class_counts(first)
                if classes is None:
                    for name, arr in list(outputs.items())[:MAX_OUTPUTS]:
                        m = _moments(arr)
                        if m is not None:
                            moments.append((name, m))
            except Exception:  # an odd output type must never fail the request it came with
                classes, moments = None, []
        with self._lock:
            w = self._window.get(model)
            if w is None:
                w = self._window[model] = ModelWindow()
            w.requests += 1
            if not ok:
                w.errors += 1
                return
            w.answered += 1
            if offloaded:
                w.offloaded += 1
            if seconds is not None:
                w.latency.add(seconds)
            if classes is not None:
                counts = w.classes
                for i in range(0, len(classes), 2):
                    key = str(classes[i])
                    if key not in counts and len(counts) >= MAX_CLASSES - 1:
                        key = OTHER_CLASS
                    counts[key] = counts.get(key, 0) + classes[i + 1]
            for name, (n, total, squares, low, high) in moments:
                acc = w.outputs.get(name)
                if acc is None:
                    acc = w.outputs[name] = _Moments()
                acc.count += n
                acc.total += total
                acc.squares += squares
                acc.low = min(acc.low, low)
                acc.high = max(acc.high, high)

    def take(self) -> dict[str, ModelWindow]:
        """The window so far (model ref → figures); a new, empty one starts."""
        with self._lock:
            window, self._window = self._window, {}
        return window
