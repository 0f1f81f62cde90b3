"""A fault-injecting TCP proxy on loopback, run on its own asyncio loop in a thread, for putting
between the agent and the broker or the artifact server.

- ``latency``: each chunk is forwarded that many seconds after it was read, in each direction;
- :meth:`partition`: every open connection is cut (reset) and new ones are closed at once, as
  when a link goes down; :meth:`heal` ends it;
- :meth:`stall`: a half-open link: connections stay open but not a byte goes through either way
  (new ones are accepted and stall too), as when a peer vanishes without a FIN; :meth:`heal`
  then resets the stalled connections, as the peer does when it comes back.

``benchmarks/delay_proxy.py`` is the benchmarks' process-level cousin (a fixed delay, no
faults); this one is controlled from the test's thread while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from typing import Any

HOST = "127.0.0.1"
CHUNK = 1 << 16


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.mode = "pass"  # pass | partition | stall
        self.stats: Counter[str] = Counter()
        self._conns: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self.port = self._call(self._start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        return int(self._server.sockets[0].getsockname()[1])

    # -- control, from the test's thread ----------------------------------------------------

    def partition(self) -> None:
        self.mode = "partition"
        self.stats["partitions"] += 1
        self._call(self._cut())

    def stall(self) -> None:
        self.mode = "stall"
        self.stats["stalls"] += 1

    def heal(self) -> None:
        stalled, self.mode = self.mode == "stall", "pass"
        if stalled:
            self._call(self._cut())

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            await self._cut()

        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the proxy, on its loop -------------------------------------------------------------

    async def _cut(self) -> None:
        for w in list(self._conns):
            self.stats["cut"] += 1
            w.transport.abort()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "partition":
            self.stats["refused"] += 1
            writer.transport.abort()
            return
        self.stats["connections"] += 1
        self._conns.add(writer)
        try:
            while self.mode == "stall":
                await asyncio.sleep(0.05)
            if writer not in self._conns:
                return
            try:
                up_r, up_w = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self._conns.add(up_w)
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer), return_exceptions=True)
            for w in (up_w, writer):
                self._conns.discard(w)
                w.transport.abort()
        finally:
            self._conns.discard(writer)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await src.read(CHUNK)
            except OSError:
                data = b""
            while self.mode == "stall" and dst in self._conns:
                await asyncio.sleep(0.05)  # hold it: nothing gets through a stalled link
            if not data or dst not in self._conns:
                if dst in self._conns and dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        dst.write_eof()
                return
            if self.latency:
                await asyncio.sleep(self.latency)
            self.stats["bytes"] += len(data)
            dst.write(data)
            with contextlib.suppress(OSError):
                await dst.drain()
