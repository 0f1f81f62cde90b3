"""A ``grpc.aio`` server for the inference service, on its own event loop in a thread (the gRPC
twin of :class:`~agent.serving.server.InferenceServer`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import grpc

from agent.serving.app import MAX_BODY_BYTES
from agent.serving.grpc.servicer import InferenceServicer
from agent.serving.service import InferenceService

log = logging.getLogger(__name__)


class GrpcServer:
    """``start()`` binds (port 0 picks a free port, known once it returns) and serves;
    ``stop()`` lets calls in flight finish for up to ``grace`` seconds, then ends them.

    ``max_message_bytes`` bounds a request as the HTTP body limit does: gRPC refuses a bigger one
    with RESOURCE_EXHAUSTED before it is parsed.
    """

    def __init__(
        self,
        service: InferenceService,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = MAX_BODY_BYTES,
        grace: float = 5.0,
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` for a client on this machine (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        """Bind, serve and return :attr:`address`. Raises ``OSError`` if the address can't be
        bound, ``RuntimeError`` if the server does not come up within ``timeout``."""
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(started, failure), name="edge-agent-grpc", daemon=True
        )
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError(f"the gRPC server did not start on {self.host}:{self.port}")
        if failure:
            self._thread.join(timeout)
            raise failure[0]
        log.info("gRPC inference API listening on %s", self.address)
        return self.address

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        try:
            asyncio.run(self._serve(started, failure))
        except BaseException as exc:  # reported to start(), or logged once serving
            if not started.is_set():
                failure.append(exc)
                started.set()
            else:
                log.exception("the gRPC server failed")

    async def _serve(self, started: threading.Event, failure: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                # gRPC sets SO_REUSEPORT by default: a second server on a taken port would
                # silently share it instead of failing.
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((InferenceServicer(self.service).handler(),))
        target = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            port = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise OSError(f"cannot bind the gRPC inference API to {target}: {exc}") from exc
        if port == 0:
            raise OSError(f"cannot bind the gRPC inference API to {target}")
        self.port = port
        await server.start()
        started.set()
        try:
            await self._stopping.wait()
        finally:
            await server.stop(self.grace)
