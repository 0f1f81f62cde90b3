"""The listening socket every HTTP front-end here is served from (standard library only)."""

from __future__ import annotations

import socket


def tcp_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), not yet listening.

    Naming TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    without it a response written as header then body waits ~40 ms for the client's delayed ACK
    (Nagle). Linux also copies the listener's TCP_NODELAY to accepted sockets. Raises
    :class:`OSError` (the socket is closed) when the address can't be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
