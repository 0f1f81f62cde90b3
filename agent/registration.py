"""Registration with the fleet server: ``POST /api/v1/devices/register`` (docs/api.md).

Retried with backoff until the server answers; the answer carries the MQTT settings. A refusal
(4xx) is final: it is raised as :class:`~agent.errors.RegistrationError` with the server's words.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from agent.backoff import Backoff
from agent.contracts.topics import TOPIC_ROOT
from agent.errors import RegistrationError

log = logging.getLogger(__name__)

PATH = "/api/v1/devices/register"
PROTOCOLS = ("5", "3.1.1")


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    protocol: str = "5"
    keepalive: int = 60
    topic_root: str = TOPIC_ROOT

    @classmethod
    def from_dict(cls, data: Any, server_url: str) -> MqttSettings:
        """Parse the ``mqtt`` object. A missing or wildcard host means the fleet server's host."""
        if not isinstance(data, dict):
            raise RegistrationError(f"registration answer: 'mqtt' is not an object: {data!r}")
        host = data.get("host") or ""
        if host in ("", "0.0.0.0", "::"):
            host = urlparse(server_url).hostname or "localhost"
        protocol = str(data.get("protocol", "5"))
        if protocol not in PROTOCOLS:
            raise RegistrationError(
                f"registration answer: MQTT protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        root = data.get("topic_root") or TOPIC_ROOT
        if root != TOPIC_ROOT:
            raise RegistrationError(
                f"registration answer: topic root {root!r}; this agent speaks {TOPIC_ROOT!r}"
            )
        try:
            return cls(
                host=str(host),
                port=int(data["port"]),
                protocol=protocol,
                keepalive=int(data.get("keepalive") or 60),
                topic_root=root,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistrationError(f"registration answer: bad mqtt settings {data!r}: {exc}") from exc


@dataclass(frozen=True)
class Registration:
    mqtt: MqttSettings
    device: dict[str, Any] = field(default_factory=dict)
    server_time: float | None = None


def register(
    server_url: str,
    body: dict[str, Any],
    *,
    client: httpx.Client | None = None,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
) -> Registration | None:
    """Register until the server answers. Returns ``None`` if ``stop`` is set first.

    Raises :class:`RegistrationError` when the server refuses (4xx) or answers nonsense.
    """
    backoff = backoff or Backoff(initial=1.0, maximum=60.0)
    stop = stop or threading.Event()
    url = server_url.rstrip("/") + PATH
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True)
    try:
        attempt = 0
        while not stop.is_set():
            try:
                resp = http.post(url, json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.is_success:
                    reg = _parse(resp, server_url)
                    if reg is not None:
                        return reg
                    problem = "the server has no MQTT broker yet"
                else:
                    _check_refusal(resp)
                    problem = f"HTTP {resp.status_code}"
            delay = backoff.delay(attempt)
            attempt += 1
            log.warning("registration at %s failed (%s); retrying in %.1fs", url, problem, delay)
            stop.wait(delay)
        return None
    finally:
        if own:
            http.close()


def _check_refusal(resp: httpx.Response) -> None:
    """Raise RegistrationError for a final refusal (4xx other than timeout / rate limit)."""
    if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
        why = f"HTTP {resp.status_code}: {_error_text(resp)}"
        raise RegistrationError(f"the fleet server refused the registration: {why}")


def _parse(resp: httpx.Response, server_url: str) -> Registration | None:
    """The registration, or ``None`` when the server has no broker to offer yet (retry)."""
    try:
        data = resp.json()
    except ValueError as exc:
        raise RegistrationError(f"registration answer is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mqtt"), dict):
        raise RegistrationError(f"registration answer has no 'mqtt' settings: {str(data)[:200]}")
    if data["mqtt"].get("port") is None:
        return None
    server_time = data.get("server_time")
    return Registration(
        mqtt=MqttSettings.from_dict(data["mqtt"], server_url),
        device=device if isinstance(device := data.get("device"), dict) else {},
        server_time=server_time if isinstance(server_time, int | float) else None,
    )


def _error_text(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return resp.text[:300]
    if isinstance(err, dict):
        return f"{err.get('code')}: {err.get('message')}"
    return str(err)
