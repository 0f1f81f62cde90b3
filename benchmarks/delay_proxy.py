"""A loopback TCP proxy that delays every byte by a fixed time each way: an injected round trip.

    python benchmarks/delay_proxy.py --target 127.0.0.1:PORT --delay-ms 15 --max-seconds 300

prints one JSON line ``{"event": "ready", "port": N}`` once it listens on ``127.0.0.1:N``.
Each chunk read from one side is written to the other ``delay`` after it arrived; chunks queue
behind each other, so the delay adds latency without limiting throughput (a long fat pipe, not a
slow one). When the target refuses the connection the client's connection is closed after one
round trip (2 x delay), as a refusal from a far host would arrive.

Bounded and self-stopping: at most ``--max-connections`` at once (more are closed at once), at
most ``--max-buffer`` bytes in flight per direction (reading pauses beyond it), and the process
exits after ``--max-seconds`` or when its parent dies, so a benchmark that crashed leaves nothing
running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time

HOST = "127.0.0.1"
CHUNK = 1 << 16


class DelayProxy:
    def __init__(self, target: tuple[str, int], delay: float, max_connections: int, max_buffer: int) -> None:
        self.target, self.delay = target, delay
        self.max_connections, self.max_buffer = max_connections, max_buffer
        self.open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections:
            writer.close()
            return
        self.open += 1
        try:
            _nodelay(writer)
            try:
                up_r, up_w = await asyncio.open_connection(*self.target)
            except OSError:
                await asyncio.sleep(2 * self.delay)  # the refusal comes back one round trip later
                return
            _nodelay(up_w)
            await asyncio.gather(self.pipe(reader, up_w), self.pipe(up_r, writer), return_exceptions=True)
            up_w.close()
        finally:
            self.open -= 1
            writer.close()

    async def pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy ``src`` to ``dst``, each chunk ``delay`` after it was read; EOF is passed on the
        same way (as a half-close)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        room = asyncio.Semaphore(max(1, self.max_buffer // CHUNK))

        async def send() -> None:
            loop = asyncio.get_running_loop()
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                room.release()
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        sender = asyncio.create_task(send())
        loop = asyncio.get_running_loop()
        try:
            while True:
                await room.acquire()
                try:
                    data = await src.read(CHUNK)
                except OSError:
                    data = b""
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    proxy = DelayProxy((host, int(port)), args.delay_ms / 1000, args.max_connections, args.max_buffer)
    server = await asyncio.start_server(proxy.handle, HOST, args.port, backlog=1024)
    print(json.dumps({"event": "ready", "port": server.sockets[0].getsockname()[1]}), flush=True)
    parent = os.getppid()
    stop_at = time.monotonic() + args.max_seconds
    async with server:
        while time.monotonic() < stop_at and os.getppid() == parent:
            await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    ap.add_argument("--delay-ms", type=float, default=15.0, help="delay each way (default 15)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long (default 600)")
    ap.add_argument("--max-connections", type=int, default=512)
    ap.add_argument("--max-buffer", type=int, default=4 << 20, help="bytes in flight per direction")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
