"""Uvicorn in a background thread, on a socket bound here (port 0 picks a free port, and the
port is known before the server starts, with no race)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from agent.serving.sockets import tcp_listener

log = logging.getLogger(__name__)


class InferenceServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host == "::" else self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        """Bind, start serving and return the base URL. Raises ``OSError`` if the port is taken,
        ``RuntimeError`` if uvicorn does not come up within ``timeout``."""
        sock = tcp_listener(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # devices' apps call the agent directly, not through a proxy
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="edge-agent-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the inference server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info("inference API listening on %s", self.url)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
