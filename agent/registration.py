"""Enrollment with the fleet server, ``POST /api/v1/devices/enroll`` (docs/api.md), and
certificate renewal on the device listener, ``POST /api/v1/device/renew`` (mTLS).

Enrollment is retried with backoff until the server answers; a refusal (4xx: unknown, used or
expired token, bad profile) is final and raised as :class:`~agent.errors.EnrollmentError` with the
server's words. The answer's broker host, when missing or a wildcard, is the server's host.
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
from agent.contracts.registration import EnrollmentRequest, EnrollmentResponse, MqttSettings, RenewalResponse
from agent.errors import EnrollmentError

log = logging.getLogger(__name__)

PATH = "/api/v1/devices/enroll"
RENEW_PATH = "/api/v1/device/renew"


def mqtt_settings(data: Any, server_url: str) -> MqttSettings:
    """Read the answer's ``mqtt`` object; a missing or wildcard host means the fleet server's host.

    Raises :class:`EnrollmentError` for settings this agent can't use (no port included)."""
    try:
        settings = MqttSettings.from_dict(data, "mqtt")
    except ContractError as exc:
        raise EnrollmentError(f"enrollment answer: bad mqtt settings {data!r}: {exc}") from exc
    if not settings.port:
        raise EnrollmentError(f"enrollment answer: bad mqtt settings {data!r}: no port")
    return _with_host(settings, server_url)


def _with_host(settings: MqttSettings, server_url: str) -> MqttSettings:
    if settings.host in ("", "0.0.0.0", "::"):
        return replace(settings, host=urlparse(server_url).hostname or "localhost")
    return settings


def enroll(
    server_url: str,
    body: EnrollmentRequest,
    *,
    client: httpx.Client | None = None,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
) -> EnrollmentResponse | None:
    """Enroll until the server answers. Returns ``None`` if ``stop`` is set first, else the
    answer with the broker's host filled in (:func:`mqtt_settings`' rule) and its port known.

    Raises :class:`EnrollmentError` when the server refuses (4xx) or answers nonsense.
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
                    answer = _parse(resp, server_url)
                    if answer is not None:
                        return answer
                    problem = "the server has no MQTT broker yet"
                else:
                    _check_refusal(resp, "enrollment")
                    problem = f"HTTP {resp.status_code}"
            delay = backoff.delay(attempt)
            attempt += 1
            log.warning("enrollment at %s failed (%s); retrying in %.1fs", url, problem, delay)
            stop.wait(delay)
        return None
    finally:
        if own:
            http.close()


def renew(client: httpx.Client, device_api: str, csr: str) -> RenewalResponse:
    """One renewal request on the device listener with the current certificate (``client`` from
    :func:`agent.identity.device_http_client`). Raises :class:`EnrollmentError` for a refusal
    (revoked: only a new token helps), ``httpx.TransportError`` or ``httpx.HTTPStatusError``
    (5xx) to retry later."""
    resp = client.post(device_api.rstrip("/") + RENEW_PATH, json={"csr": csr})
    if not resp.is_success:
        _check_refusal(resp, "renewal")
        resp.raise_for_status()
    try:
        return RenewalResponse.from_dict(resp.json())
    except (ValueError, ContractError) as exc:
        raise EnrollmentError(f"renewal answer: {exc}") from exc


def _check_refusal(resp: httpx.Response, what: str) -> None:
    """Raise EnrollmentError for a final refusal (4xx other than timeout / rate limit)."""
    if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
        why = f"HTTP {resp.status_code}: {_error_text(resp)}"
        raise EnrollmentError(f"the fleet server refused the {what}: {why}")


def _parse(resp: httpx.Response, server_url: str) -> EnrollmentResponse | None:
    """The enrollment, or ``None`` when the server has no broker to offer yet (retry)."""
    try:
        data = resp.json()
    except ValueError as exc:
        raise EnrollmentError(f"enrollment answer is not JSON: {exc}") from exc
    try:
        answer = EnrollmentResponse.from_dict(data)
    except ContractError as exc:
        raise EnrollmentError(f"{exc} (in {str(data)[:200]})") from exc
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
