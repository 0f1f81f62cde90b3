"""The device listener: HTTPS with client certificates required (mTLS), for the routes a device
calls with its identity: bundle downloads (``/artifacts/...``), certificate renewal
(``POST /api/v1/device/renew``) and whatever else is added to :data:`DEVICE_ROUTERS` (the TUF
metadata under ``/tuf/``).

A second uvicorn server on its own port and thread, with an ``ssl.SSLContext`` that requires a
client certificate signed by the fleet CA. uvicorn does not hand the peer certificate to the app,
so :class:`PeerCertProtocol` (its h11 protocol, one method more) puts the DER bytes into the
connection's ``scope["state"]``; :func:`require_device` reads it, and checks against the database
that the certificate was issued to the CN's device and is not revoked (the TLS layer alone would
take a revoked one: its CRL is not reloaded at run time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from uvicorn.protocols.http.h11_impl import H11Protocol

from fleet_server.errors import UnauthorizedError
from fleet_server.identity.ca import cert_cn, cert_serial

log = logging.getLogger(__name__)

PEER_CERT = "peer_cert_der"
RENEW_PATH = "/api/v1/device/renew"


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, with the TLS peer certificate in every request's ``state``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app_state = {**self.app_state, PEER_CERT: der}


def require_device(request: Request) -> str:
    """The device id of the caller's client certificate (CN), if the fleet issued that
    certificate to it and neither is revoked. Raises ``UnauthorizedError``/``RevokedError``."""
    from fleet_server.identity.enrollment import check_certificate

    der = getattr(request.state, PEER_CERT, None)
    if not der:
        raise UnauthorizedError("a device client certificate is required here")
    device_id = cert_cn(der)
    fleet = request.app.state.fleet
    with fleet.read_sessions() as s:
        check_certificate(s, device_id, cert_serial(der))
    return device_id


class RenewBody(BaseModel):
    csr: str = Field(description="PEM certificate signing request (the device's key stays on the device)")


renew_router = APIRouter(tags=["devices"])


@renew_router.post(RENEW_PATH, summary="Renew the caller's client certificate (mTLS)")
def renew(body: RenewBody, request: Request, device_id: str = Depends(require_device)) -> dict[str, Any]:
    from fleet_server.identity.enrollment import renew as renew_cert

    fleet = request.app.state.fleet
    der = request.state.peer_cert_der
    with fleet.sessions() as s:
        issued = renew_cert(
            s, fleet.identity.ca, device_id, cert_serial(der), body.csr, fleet.settings.cert_days
        )
    log.info("renewed the certificate of %s (valid until %s)", device_id, issued.not_after.isoformat())
    return {
        "certificate": issued.pem.decode(),
        "ca_certificate": fleet.identity.ca.cert_pem.decode(),
        "not_after": issued.not_after.isoformat(),
        "server_time": time.time(),
    }


def device_routers() -> list[APIRouter]:
    """The routers the device listener serves, each behind :func:`require_device`."""
    from fleet_server.api import artifacts, tuf

    return [artifacts.device_router, tuf.device_router, renew_router]


def create_device_app(fleet: Any) -> FastAPI:
    from fleet_server.api.errors import install_error_handlers

    app = FastAPI(title="EdgeFleet device API", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.fleet = fleet
    for router in device_routers():
        app.include_router(router, dependencies=[Depends(require_device)])
    install_error_handlers(app)
    return app


def server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class DeviceListener:
    """The mTLS uvicorn server on ``host:port`` (0: a free one), on a daemon thread."""

    def __init__(
        self, fleet: Any, host: str, port: int, context: ssl.SSLContext, advertise: str | None = None
    ) -> None:
        from agent.serving.sockets import tcp_listener

        self._sock = tcp_listener(host, port)
        self._sock.listen(1024)
        self.port = int(self._sock.getsockname()[1])
        shown = advertise or ("127.0.0.1" if host in ("0.0.0.0", "") else host)
        self.url = f"https://{shown}:{self.port}"
        config = uvicorn.Config(
            create_device_app(fleet),
            log_config=None,
            access_log=False,
            lifespan="off",
            http=PeerCertProtocol,
            ssl_context_factory=lambda _config, _default: context,
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="device-listener", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        log.info("device listener (mTLS) at %s", self.url)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()


__all__ = ["DeviceListener", "PeerCertProtocol", "require_device"]
