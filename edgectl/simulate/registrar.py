"""How a simulated device joins the fleet: one small seam, so the way in can change alone.

:class:`Registrar` is the whole interface: given who the device is, return what it needs to
speak MQTT and download (:class:`Credentials`). :class:`EnrollRegistrar` does what the agent
does: make the device key and a CSR (:func:`agent.identity.make_csr`), post them with an
enrollment token through :func:`agent.registration.enroll` (the agent's retry rule), keep the
answer with :func:`agent.identity.store_enrollment`, and hand back the broker settings with an
``ssl.SSLContext`` that carries the device certificate. The MQTT side applies ``Credentials.tls``;
``--fetch`` downloads go to ``Credentials.http_base`` (the device listener) with that same
certificate.

Calls come from several threads at once (the simulator enrolls devices in parallel), so an
implementation must be thread-safe.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.contracts.registration import MqttSettings


class RegistrationFailed(RuntimeError):
    """The server refused a device, or stopped answering; the message says which and why."""


@dataclass(frozen=True)
class Credentials:
    """What a device connects with: the broker, and TLS (mTLS with its own certificate) or
    ``None`` for a plain listener. ``http_base`` is where it downloads from (``None``: the server
    URL); ``identity_dir`` the device's data directory (its key and certificate, for
    :func:`agent.identity.device_http_client`), ``None`` for a device without one."""

    mqtt: MqttSettings
    tls: ssl.SSLContext | None = None
    http_base: str | None = None
    identity_dir: Path | None = None


class Registrar(Protocol):
    def register(
        self, device_id: str, profile: str, labels: dict[str, str], facts: dict[str, Any]
    ) -> Credentials:
        """Register (or enrol) one device. Raises :class:`RegistrationFailed`."""
        ...

    def close(self) -> None: ...


class EnrollRegistrar:
    """Enrollment with ``token`` (it must have a use left for every device), as the agent does
    it: each device's key, certificate and enrollment answer under ``work_dir/<device id>``.
    Transport errors and 5xx are retried with the agent's backoff, a 4xx refusal is final;
    ``stop`` ends the retries early."""

    def __init__(
        self,
        server_url: str,
        token: str,
        work_dir: Path,
        *,
        stop: threading.Event | None = None,
        timeout: float = 30.0,
    ) -> None:
        import httpx

        self.server_url = server_url
        self.token = token
        self.work_dir = work_dir
        self._stop = stop or threading.Event()
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True)

    def register(
        self, device_id: str, profile: str, labels: dict[str, str], facts: dict[str, Any]
    ) -> Credentials:
        from agent import identity
        from agent.contracts.registration import EnrollmentRequest
        from agent.errors import EnrollmentError
        from agent.registration import enroll

        data_dir = self.work_dir / device_id  # one directory per device: no two threads share one
        try:
            body = EnrollmentRequest(
                token=self.token,
                device_id=device_id,
                profile=profile,
                csr=identity.make_csr(data_dir, device_id),
                labels=labels,
                facts=facts,
            )
            answer = enroll(self.server_url, body, client=self._http, stop=self._stop)
            if answer is None:
                raise RegistrationFailed(f"{device_id}: stopped before the server answered")
            enrolled = identity.store_enrollment(data_dir, answer)
            tls = identity.tls_context(data_dir) if enrolled.mqtt.tls else None
        except EnrollmentError as exc:
            raise RegistrationFailed(f"{device_id}: {exc}") from exc
        except (OSError, ValueError) as exc:
            why = f"{device_id}: could not keep its identity in {data_dir}: {exc}"
            raise RegistrationFailed(why) from exc
        return Credentials(mqtt=enrolled.mqtt, tls=tls, http_base=enrolled.device_api, identity_dir=data_dir)

    def close(self) -> None:
        self._http.close()
