"""A minimal HTTP/1.1 keep-alive client over one raw socket, for timing.

``http.client`` parses headers with the email package and copies bodies more than once; here a
request is one pre-built bytes object written with one ``sendall`` and the response is read
through one buffered reader, so the client costs little next to the server it measures.
``TCP_NODELAY`` is set because a request body written after its header must not wait for the
server's delayed ACK (the very delay the issue found in the agent).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


class HttpError(RuntimeError):
    """The server answered with a status other than 200, or broke the connection."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One POST, keep-alive, as bytes ready to send."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive connection; reconnects once if the server closed it between requests."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._rfile = None

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._rfile = sock, sock.makefile("rb", buffering=1 << 16)

    def close(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._rfile = None

    def send(self, request: bytes) -> HttpResponse:
        """Send a pre-built request, return the whole response. Raises :class:`HttpError` for a
        broken connection (``OSError`` for a refused one)."""
        reused = self._sock is not None
        try:
            return self._exchange(request)
        except (HttpError, OSError):
            self.close()
            if not reused:
                raise
        # A kept-alive connection the server timed out between requests: one fresh try.
        try:
            return self._exchange(request)
        except (HttpError, OSError):
            self.close()
            raise

    def _exchange(self, request: bytes) -> HttpResponse:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        self._sock.sendall(request)
        return self._read()

    def _read(self) -> HttpResponse:
        rfile = self._rfile
        assert rfile is not None
        status_line = rfile.readline(65537)
        if not status_line:
            raise HttpError("connection closed by the server before a response")
        parts = status_line.split(None, 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = rfile.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return HttpResponse(status, headers, body)

    def _read_chunked(self) -> bytes:
        rfile = self._rfile
        assert rfile is not None
        out = bytearray()
        while True:
            size = int(rfile.readline(65537).split(b";")[0], 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += rfile.read(size)
            rfile.readline(65537)


def get_status(host: str, port: int, path: str, timeout: float = 2.0) -> int:
    """The status of a GET (readiness probes). Raises ``OSError`` when nothing listens."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        first = sock.makefile("rb").readline()
    if not first:
        raise OSError("empty answer")
    return int(first.split()[1])


def get_text(host: str, port: int, path: str, timeout: float = 5.0) -> str:
    """The body of a GET that answers 200 (``/metrics``). Raises ``OSError`` or :class:`HttpError`."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(1 << 16):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise HttpError(f"GET {path}: {head[:60]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return body.decode(errors="replace")
