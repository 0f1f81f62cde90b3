"""Telemetry ingest: the bridge hands each validated message over, a writer thread stores them in
batches.

:meth:`TelemetryIngest.submit` only appends to a bounded in-memory queue (paho's network thread
must never wait on the database); the writer takes up to ``batch`` messages at a time, every
``flush_s`` at most, and stores them in one short transaction: one multi-row insert into
``telemetry`` and one update of each device's latest telemetry. Messages from unregistered
devices are not stored; a window stored before (same device, ``seq`` and ``ts``: a QoS 1
redelivery, or a replay after a lost acknowledgement) is skipped. A full queue drops its oldest
message, counted as ``dropped``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from agent.contracts import Telemetry
from fleet_server.db import Device, TelemetryRow
from fleet_server.metrics import Metrics

log = logging.getLogger(__name__)

FUTURE_SLACK_S = 300.0  # a device clock this far ahead is not believed: the receipt time is used


@dataclass(frozen=True)
class Received:
    device_id: str
    message: Telemetry
    raw: dict[str, Any]
    at: datetime


def row_values(r: Received) -> dict[str, Any]:
    """The ``telemetry`` row for one message."""
    t = r.message
    ts = r.at
    if t.ts > 0 and t.ts <= r.at.timestamp() + FUTURE_SLACK_S:
        ts = datetime.fromtimestamp(t.ts, UTC)
    lat = t.latency
    return {
        "device_id": r.device_id,
        "model": t.model or "",
        "ts": ts,
        "received_at": r.at,
        "seq": t.seq,
        "window_s": t.window_s,
        "requests": t.requests,
        "errors": t.errors,
        "throughput_rps": t.throughput_rps,
        "p50_ms": None if lat is None else lat.p50_ms,
        "p95_ms": None if lat is None else lat.p95_ms,
        "p99_ms": None if lat is None else lat.p99_ms,
        "queue_depth": t.queue_depth,
        "offload_ratio": t.offload_ratio,
        "cpu_percent": t.cpu_percent,
        "memory_mb": t.memory_mb,
        "temperature_c": t.temperature_c,
        "dropped": t.dropped,
        "classes": t.classes,
        "outputs": None if t.outputs is None else {k: v.to_dict() for k, v in t.outputs.items()},
    }


def _unique(items: list[Received]) -> list[Received]:
    """``items`` without repeats of one (device, seq, ts) window within the batch (a QoS 1
    redelivery); repeats across batches are skipped by the insert (the unique constraint)."""
    seen: set[tuple[str, int, float]] = set()
    out = []
    for r in items:
        t = r.message
        if t.seq is not None:
            key = (r.device_id, t.seq, t.ts)
            if key in seen:
                continue
            seen.add(key)
        out.append(r)
    return out


def _insert_new(dialect: str) -> Insert:
    """A multi-row insert that skips windows already stored (the unique device, seq, ts)."""
    if dialect == "sqlite":
        return sqlite.insert(TelemetryRow).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(TelemetryRow).on_conflict_do_nothing()
    return insert(TelemetryRow)


class TelemetryIngest:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        metrics: Metrics | None = None,
        *,
        max_queue: int = 20_000,
        batch: int = 500,
        flush_s: float = 0.25,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics or Metrics()
        self._queue: deque[Received] = deque()
        self._max_queue = max_queue
        self._batch = batch
        self._flush_s = flush_s
        self._clock = clock
        self._cond = threading.Condition()
        self._busy = 0  # messages taken by the writer and not yet stored
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fleet-telemetry-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop the writer."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self.write_pending()

    def submit(self, device_id: str, message: Telemetry, raw: dict[str, Any]) -> None:
        """Queue one validated message (never blocks, never raises)."""
        item = Received(device_id, message, raw, self._clock())
        with self._cond:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._metrics.telemetry_messages.labels("dropped").inc()
            self._queue.append(item)
            if len(self._queue) >= self._batch:
                self._cond.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is stored (tests, shutdown). True if it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(self._flush_s)
                if self._stopping and not self._queue:
                    return
            self.write_pending()

    def write_pending(self) -> int:
        """Store queued messages, ``batch`` at a time, until the queue is empty. Returns how many
        were stored."""
        stored = 0
        while True:
            with self._cond:
                items = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
                self._busy = len(items)
            if not items:
                return stored
            try:
                stored += self._store(items)
            except Exception as exc:  # the batch is lost; the writer lives on
                first = str(exc).split("\n", 1)[0]
                log.error(
                    "storing %d telemetry messages failed: %s: %s", len(items), type(exc).__name__, first
                )
                self._metrics.telemetry_messages.labels("error").inc(len(items))
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()

    def _store(self, items: list[Received]) -> int:
        ids = {r.device_id for r in items}
        with self._sessions.begin() as s:
            known = set(s.scalars(select(Device.device_id).where(Device.device_id.in_(ids))))
            mine = [r for r in items if r.device_id in known]
            keep = _unique(mine)
            if keep:
                s.execute(_insert_new(s.get_bind().dialect.name), [row_values(r) for r in keep])
                latest = {r.device_id: r for r in keep}
                s.execute(
                    update(Device),
                    [
                        {"device_id": d, "telemetry": r.raw, "telemetry_at": r.at, "last_seen": r.at}
                        for d, r in latest.items()
                    ],
                )
        m = self._metrics
        m.telemetry_messages.labels("stored").inc(len(keep))
        if len(mine) < len(items):
            m.telemetry_messages.labels("unknown_device").inc(len(items) - len(mine))
        if len(keep) < len(mine):
            m.telemetry_messages.labels("duplicate").inc(len(mine) - len(keep))
        for r in keep:
            t = r.message
            if t.dropped:
                m.telemetry_device_dropped.inc(t.dropped)
            if t.model and t.requests:
                model = m.model_label(t.model)
                m.model_requests.labels(model).inc(t.requests)
                if t.errors:
                    m.model_errors.labels(model).inc(t.errors)
        return len(keep)
