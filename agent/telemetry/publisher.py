"""The telemetry publisher: closes a window every ``interval`` seconds and sends it, or keeps it
in the offline buffer until the broker is back.

Order is kept: while anything is buffered, new messages join the buffer's end, and the buffer is
replayed oldest first whenever ``send`` works again (checked every second at most). ``send``
returns true only once the broker acknowledged the message (QoS 1), so a message is removed
from the buffer only after that. The first message of a window carries the buffer's dropped
count. At stop, the open window is closed and sent or buffered too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from agent.contracts.telemetry import Telemetry
from agent.serving.metrics import Metrics
from agent.telemetry.buffer import TelemetryBuffer
from agent.telemetry.process import ProcessSampler
from agent.telemetry.recorder import ModelWindow, TelemetryRecorder

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a backlog is retried between windows
REPLAY_PER_PASS = 500  # messages replayed per pass, so a stop is never held up for long


class TelemetryPublisher:
    def __init__(
        self,
        device_id: str,
        recorder: TelemetryRecorder,
        buffer: TelemetryBuffer,
        send: Callable[[bytes], bool],
        *,
        interval: float = 5.0,
        active_models: Callable[[], list[str]] = list,
        queue_depths: Callable[[], dict[str, int]] = dict,
        sampler: ProcessSampler | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device_id = device_id
        self.recorder = recorder
        self.buffer = buffer
        self._send = send
        self.interval = interval
        self._active = active_models
        self._depths = queue_depths
        self.sampler = sampler or ProcessSampler()
        self._metrics = metrics
        self._clock = clock
        self._seq = buffer.next_seq
        self._window_start = clock()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # tick() from the thread vs the final one at stop()
        self._thread = threading.Thread(target=self._run, name="edge-agent-telemetry", daemon=True)
        if metrics is not None:
            metrics.telemetry_buffered.set_function(lambda: len(self.buffer))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then close the open window (sent if the link is up, else buffered)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        try:
            self.tick()
        except Exception:
            log.exception("closing the last telemetry window failed")

    def _run(self) -> None:
        due = self._clock() + self.interval
        while not self._stop.wait(max(0.0, min(POLL_S, due - self._clock()))):
            try:
                if self._clock() >= due:
                    self.tick()
                    due = max(due + self.interval, self._clock())
                else:
                    self.replay()
            except Exception:  # the thread must live on; the next window tries again
                log.exception("telemetry window failed")

    # -- one window ------------------------------------------------------------------------------

    def messages(self, window: dict[str, ModelWindow], now: float) -> list[Telemetry]:
        """The window's messages, one per model seen or serving (one without a model when none)."""
        window_s = max(now - self._window_start, 1e-3)
        s = self.sampler
        cpu, mem, temp = s.cpu_percent(), s.memory_mb(), s.temperature_c()
        depths = self._depths()
        refs: list[str | None] = [*sorted(set(window) | set(self._active()))] or [None]
        out = []
        for ref in refs:
            w = window.get(ref) if ref is not None else None
            w = w or ModelWindow()
            out.append(
                Telemetry(
                    device_id=self.device_id,
                    ts=now,
                    window_s=round(window_s, 3),
                    model=ref,
                    requests=w.requests,
                    errors=w.errors,
                    throughput_rps=round(w.answered / window_s, 3),
                    latency=w.latency_ms(),
                    queue_depth=depths.get(ref, 0) if ref is not None else None,
                    offload_ratio=w.offload_ratio(),
                    cpu_percent=cpu,
                    memory_mb=mem,
                    temperature_c=temp,
                    classes=dict(w.classes) or None,
                    outputs=w.output_stats(),
                )
            )
        return out

    def tick(self) -> None:
        """Close the window: send its messages (after any backlog) or buffer them."""
        with self._lock:
            now = self._clock()
            msgs = self.messages(self.recorder.take(), now)
            self._window_start = now
            self.replay_locked()
            dropped = self.buffer.take_dropped()
            for i, msg in enumerate(msgs):
                carried = dropped if i == 0 else 0
                payload = replace(msg, seq=self._seq, dropped=carried).to_json()
                seq, self._seq = self._seq, self._seq + 1
                if not len(self.buffer) and self._send(payload):
                    self._count("sent")
                    continue
                try:
                    evicted = self.buffer.add(seq, payload)
                    self._count("buffered")
                    if self._metrics is not None and evicted:
                        self._metrics.telemetry_dropped.inc(evicted)
                except OSError as exc:
                    log.warning("could not buffer telemetry: %s; it is counted as dropped", exc)
                    self.buffer.give_back_dropped(carried + 1)
                    if self._metrics is not None:
                        self._metrics.telemetry_dropped.inc()

    def replay(self) -> int:
        """Send buffered messages, oldest first, until one fails. Returns how many went."""
        with self._lock:
            return self.replay_locked()

    def replay_locked(self) -> int:
        sent = 0
        while sent < REPLAY_PER_PASS:
            item = self.buffer.oldest()
            if item is None or not self._send(item[1]):
                break
            self.buffer.remove_oldest()
            self._count("replayed")
            sent += 1
        if sent:
            log.info("replayed %d buffered telemetry message(s); %d left", sent, len(self.buffer))
        return sent

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.telemetry_messages.labels(outcome).inc()
