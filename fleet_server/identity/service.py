"""The fleet's identity at run time: the CA, the broker's TLS files, the server's own MQTT TLS
context, and revocation (database, CRL file, broker reload, open connection dropped)."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config import Settings
from fleet_server.identity.broker_files import TlsFiles, write_crl, write_tls_files
from fleet_server.identity.ca import FleetCA
from fleet_server.identity.enrollment import revoke, revoked_serials

log = logging.getLogger(__name__)


class Identity:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self._sessions = sessions
        self.ca = FleetCA.load_or_create(settings.ca_dir)
        self.files = TlsFiles(settings.data_dir / "mosquitto" / "tls")

    def prepare(self) -> TlsFiles:
        """Write the broker's TLS files (CRL from the database). Call after migrating."""
        hosts = [h for h in (self.settings.host, self.public_host, socket.gethostname()) if h]
        hosts = [h for h in hosts if h not in ("0.0.0.0", "", "::")]
        with self._sessions() as s:
            revoked = revoked_serials(s)
        return write_tls_files(self.ca, self.files, hosts, revoked)

    @property
    def public_host(self) -> str | None:
        """The host devices reach the server at, when ``--public-url`` says it."""
        url = self.settings.public_url
        return urlsplit(url).hostname if url else None

    def client_context(self) -> ssl.SSLContext:
        """TLS for the server's own MQTT client: the fleet CA, the ``fleet-server`` certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.files.ca))
        ctx.load_cert_chain(str(self.files.client_cert), str(self.files.client_key))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """TLS for the device listener: the broker's server certificate, client certificates required."""
        from fleet_server.identity.device_listener import server_context

        return server_context(str(self.files.server_cert), str(self.files.server_key), str(self.files.ca))

    def revoke(self, device_id: str, broker: Any, endpoint: Any) -> list[str]:
        """Revoke ``device_id``: database, CRL rewritten, broker reloaded, its open MQTT connection
        taken over and closed (the CRL applies to new connections only). Returns the serials."""
        with self._sessions() as s:
            serials = revoke(s, device_id)
            revoked = revoked_serials(s)
        write_crl(self.ca, self.files, revoked)
        if broker is not None:
            broker.reload()
        if endpoint is not None and endpoint.tls:
            self.drop_connection(endpoint, device_id)
        log.info("revoked %s (%d certificate(s))", device_id, len(serials))
        return serials

    def drop_connection(self, endpoint: Any, client_id: str, timeout: float = 5.0) -> None:
        """Close the broker's connection of ``client_id`` by connecting with that client id (the
        broker drops the older one) and a clean session, then leaving."""
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        c.tls_set_context(self.client_context())
        try:
            c.connect(endpoint.host, endpoint.port, keepalive=10)
            c.loop_start()
            deadline = time.monotonic() + timeout
            while not c.is_connected() and time.monotonic() < deadline:
                time.sleep(0.02)
            c.disconnect()
            c.loop_stop()
        except OSError as exc:
            log.warning("could not drop the MQTT connection of %s: %s", client_id, exc)
