"""Registration with the fleet server: ``POST /api/v1/devices/register`` (docs/api.md).

Retried with backoff until the server answers; the answer carries the MQTT settings. A refusal
(4xx) is final: it is raised as :class:`~agent.errors.RegistrationError` with the server's words.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

import httpx

from agent.backoff import Backoff
from agent.contracts.errors import ContractError
from agent.contracts.registration import MqttSettings, RegistrationRequest, RegistrationResponse
from agent.errors import RegistrationError

log = logging.getLogger(__name__)

PATH = "/api/v1/devices/register"


def mqtt_settings(data: Any, server_url: str) -> MqttSettings:
    """Read the answer's ``mqtt`` object; a missing or wildcard host means the fleet server's host.

    Raises :class:`RegistrationError` for settings this agent can't use (no port included)."""
    try:
        settings = MqttSettings.from_dict(data, "mqtt")
    except ContractError as exc:
        raise RegistrationError(f"registration answer: bad mqtt settings {data!r}: {exc}") from exc
    if not settings.port:
        raise RegistrationError(f"registration answer: bad mqtt settings {data!r}: no port")
    return _with_host(settings, server_url)


def _with_host(settings: MqttSettings, server_url: str) -> MqttSettings:
    if settings.host in ("", "0.0.0.0", "::"):
        return replace(settings, host=urlparse(server_url).hostname or "localhost")
    return settings


def register(
    server_url: str,
    body: RegistrationRequest,
    *,
    client: httpx.Client | None = None,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
) -> RegistrationResponse | None:
    """Register until the server answers. Returns ``None`` if ``stop`` is set first, else the
    answer with the broker's host filled in (:func:`mqtt_settings`' rule) and its port known.

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
                resp = http.post(url, json=body.to_dict())
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


def _parse(resp: httpx.Response, server_url: str) -> RegistrationResponse | None:
    """The registration, or ``None`` when the server has no broker to offer yet (retry)."""
    try:
        data = resp.json()
    except ValueError as exc:
        raise RegistrationError(f"registration answer is not JSON: {exc}") from exc
    try:
        answer = RegistrationResponse.from_dict(data)
    except ContractError as exc:
        raise RegistrationError(f"{exc} (in {str(data)[:200]})") from exc
    if not answer.mqtt.port:
        return None
    return replace(answer, mqtt=_with_host(answer.mqtt, server_url))


def _error_text(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return resp.text[:300]
    if isinstance(err, dict):
        return f"{err.get('code')}: {err.get('message')}"
    return str(err)
