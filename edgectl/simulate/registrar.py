"""How a simulated device joins the fleet: one small seam, so the way in can change alone.

:class:`Registrar` is the whole interface: given who the device is, return what it needs to
speak MQTT (:class:`Credentials`). :class:`RestRegistrar` does what the agent does today,
``POST /api/v1/devices/register`` through :func:`agent.registration.register`. Enrolment with a
one-time token and a client certificate fits behind the same method: make the key and CSR, post
them with the token, and return the broker settings with an ``ssl.SSLContext`` that carries the
certificate (the MQTT side already applies ``Credentials.tls``).

Calls come from several threads at once (the simulator registers devices in parallel), so an
implementation must be thread-safe.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from agent.backoff import Backoff
from agent.contracts.registration import MqttSettings, RegistrationRequest


class RegistrationFailed(RuntimeError):
    """The server refused a device, or stopped answering; the message says which and why."""


@dataclass(frozen=True)
class Credentials:
    """What a device connects with: the broker, and TLS (mTLS with its own certificate) or
    ``None`` for a plain listener. ``http_base`` is where it downloads from (``None``: the server
    URL)."""

    mqtt: MqttSettings
    tls: ssl.SSLContext | None = None
    http_base: str | None = None


class Registrar(Protocol):
    def register(
        self, device_id: str, profile: str, labels: dict[str, str], facts: dict[str, Any]
    ) -> Credentials:
        """Register (or enrol) one device. Raises :class:`RegistrationFailed`."""
        ...

    def close(self) -> None: ...


class RestRegistrar:
    """``POST /api/v1/devices/register`` with the agent's own client code and its retry rule
    (transport errors and 5xx retried with backoff, a 4xx refusal final). ``stop`` ends the
    retries early."""

    def __init__(
        self, server_url: str, *, stop: threading.Event | None = None, timeout: float = 30.0
    ) -> None:
        import httpx

        self.server_url = server_url
        self._stop = stop or threading.Event()
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True)

    def register(
        self, device_id: str, profile: str, labels: dict[str, str], facts: dict[str, Any]
    ) -> Credentials:
        from agent.errors import RegistrationError
        from agent.registration import register

        body = RegistrationRequest(device_id=device_id, profile=profile, labels=labels, facts=facts)
        try:
            answer = register(
                self.server_url,
                body,
                client=self._http,
                backoff=Backoff(initial=0.5, maximum=10.0),
                stop=self._stop,
            )
        except RegistrationError as exc:
            raise RegistrationFailed(f"{device_id}: {exc}") from exc
        if answer is None:
            raise RegistrationFailed(f"{device_id}: stopped before the server answered")
        return Credentials(mqtt=answer.mqtt)

    def close(self) -> None:
        self._http.close()
