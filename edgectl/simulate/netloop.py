"""One thread that drives many paho-mqtt clients through a selector, plus timers.

paho's external-loop API (``on_socket_open``/``close``/``register_write``/``unregister_write``,
``loop_read``, ``loop_write``, ``loop_misc``) lets one ``selectors`` loop serve every client, so
a simulated device costs a client object and a socket, not a thread. Timers (a heap) and calls
handed over from other threads (:meth:`NetLoop.call_soon_threadsafe`, which wakes the selector
through a socket pair) run on the same thread, so device state needs no locks.

Every paho call on a client and every timer callback runs on the loop thread; an exception from
one is logged and the loop goes on, so one device's bug can't stop the others.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0  # how often every client's keepalive is checked


class Timer:
    """A scheduled call; :meth:`cancel` makes it a no-op."""

    __slots__ = ("cancelled", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn: Callable[[], None] | None = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.fn = None


class NetLoop:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._calls: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._clients: set[mqtt.Client] = set()  # those with an open socket
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    # -- clients ------------------------------------------------------------------------------

    def attach(self, client: mqtt.Client) -> None:
        """Have this loop drive ``client`` (call before its first connect)."""
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing

    def _opened(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._sel.register(sock, selectors.EVENT_READ, client)
        self._clients.add(client)

    def _closed(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._clients.discard(client)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)

    def _want_write(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _done_writing(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ, client)

    @property
    def connections(self) -> int:
        return len(self._clients)

    # -- scheduling ---------------------------------------------------------------------------

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` on the loop thread after ``delay`` seconds (loop thread only)."""
        timer = Timer(fn)
        heapq.heappush(self._timers, (self.clock() + max(0.0, delay), next(self._order), timer))
        return timer

    def call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread as soon as it can (any thread)."""
        self._calls.append(fn)
        with contextlib.suppress(OSError):  # a full pipe: the loop is awake anyway
            self._wake_w.send(b"\0")

    def run_sync(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the loop thread and return its result (any other thread)."""
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self.call_soon_threadsafe(call)
        if not done.wait(timeout):
            raise TimeoutError(f"the network loop did not run the call within {timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # -- the loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="simulate-netloop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._running.clear()
        self.call_soon_threadsafe(lambda: None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        next_misc = self.clock() + MISC_INTERVAL_S
        while self._running.is_set():
            now = self.clock()
            wait = min(next_misc, self._timers[0][0] if self._timers else next_misc) - now
            if self._calls:
                wait = 0
            for key, mask in self._sel.select(max(0.0, wait)):
                client = key.data
                if client is None:
                    self._drain_wake()
                    continue
                if client.socket() is not key.fileobj:
                    continue  # closed earlier in this batch
                if mask & selectors.EVENT_READ:
                    self._guard(client.loop_read)
                if mask & selectors.EVENT_WRITE and client.socket() is key.fileobj:
                    self._guard(client.loop_write)
            while self._calls:
                self._guard(self._calls.popleft())
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                _, _, timer = heapq.heappop(self._timers)
                if timer.fn is not None:
                    self._guard(timer.fn)
            if now >= next_misc:
                for client in list(self._clients):
                    self._guard(client.loop_misc)
                next_misc = now + MISC_INTERVAL_S

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.errors += 1
            log.exception("a simulated device's callback failed")
