"""What Mosquitto needs for mTLS and per-device ACLs, written from the fleet CA.

The ACL (:func:`acl_text`) is the rule of the fleet's topics: the broker takes the client
certificate's CN as the username (``use_identity_as_username``), so ``%u`` is the device id.

- a device reads only ``edgefleet/v1/devices/<its id>/desired`` and writes only its own
  ``reported``, ``telemetry`` and ``status`` (its last will included);
- only :data:`~fleet_server.identity.ca.SERVER_CN` reads device topics and writes desired states.
  Mosquitto checks a shared subscription (``$share/group/filter``) against its filter, so the
  bridge's ``$share/fleet-server/edgefleet/v1/devices/+/reported`` needs read on the filter.

Files are replaced atomically (:func:`agent.durable.atomic_write`), so a reload never reads half a
CRL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.contracts import TOPIC_ROOT
from agent.durable import atomic_write
from fleet_server.identity.ca import SERVER_CN, FleetCA, Issued, key_pem, new_key, utc_now

RENEW_BEFORE = dt.timedelta(days=30)  # the server's own certificates are made again this long before expiry


def acl_text(root: str = TOPIC_ROOT) -> str:
    """The Mosquitto ACL file (pure)."""
    devices = f"{root}/devices"
    return "\n".join(
        [
            "# Written by fleet-server: the username is the client certificate's CN.",
            f"user {SERVER_CN}",
            f"topic readwrite {root}/#",
            "",
            "# every device: its own topics only",
            f"pattern read {devices}/%u/desired",
            f"pattern write {devices}/%u/reported",
            f"pattern write {devices}/%u/telemetry",
            f"pattern write {devices}/%u/status",
            "",
        ]
    )


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the broker's TLS files and the server's own client identity."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.dir / "broker.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "broker.key"

    @property
    def crl(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def acl(self) -> Path:
        return self.dir / "acl"

    @property
    def client_cert(self) -> Path:
        return self.dir / f"{SERVER_CN}.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / f"{SERVER_CN}.key"


def _fresh(cert: Path, now: dt.datetime) -> bool:
    from cryptography import x509

    try:
        c = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return False
    return c.not_valid_after_utc - now > RENEW_BEFORE


def _write_pair(key_path: Path, cert_path: Path, make: object) -> None:
    key = new_key()
    issued: Issued = make(key)  # type: ignore[operator]
    atomic_write(key_path, key_pem(key))
    atomic_write(cert_path, issued.pem)


def write_tls_files(
    ca: FleetCA, files: TlsFiles, hosts: Iterable[str], revoked: Iterable[tuple[int, dt.datetime]]
) -> TlsFiles:
    """Write the CA certificate, CRL and ACL, and (when missing, unreadable or near expiry) the
    broker's server certificate for ``hosts`` and the server's own client certificate.

    Raises :class:`OSError`."""
    files.dir.mkdir(parents=True, exist_ok=True)
    now = utc_now()
    atomic_write(files.ca, ca.cert_pem)
    write_crl(ca, files, revoked)
    atomic_write(files.acl, acl_text().encode())
    hosts = list(dict.fromkeys(["127.0.0.1", "localhost", *hosts]))
    if not _fresh(files.server_cert, now) or not _names(files.server_cert, hosts):
        _write_pair(files.server_key, files.server_cert, lambda k: ca.issue_server(k, hosts))
    if not _fresh(files.client_cert, now):
        _write_pair(files.client_key, files.client_cert, ca.issue_server_client)
    return files


def _names(cert: Path, hosts: list[str]) -> bool:
    """Whether ``cert`` names every host in ``hosts`` (a changed host needs a new certificate)."""
    from cryptography import x509

    try:
        c = x509.load_pem_x509_certificate(cert.read_bytes())
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )
    return set(hosts) <= have


def write_crl(ca: FleetCA, files: TlsFiles, revoked: Iterable[tuple[int, dt.datetime]]) -> None:
    """Replace the CRL file atomically. Raises :class:`OSError`."""
    atomic_write(files.crl, ca.crl(revoked))
