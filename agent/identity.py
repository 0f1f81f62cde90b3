"""The device's identity: its private key (made here, never sent), its client certificate from
the fleet CA, the CA certificate, and what enrollment said (broker, device API).

Files under ``<data dir>/identity/``: ``device.key`` (0600), ``device.crt``, ``ca.crt`` and
``enrollment.json``; the TUF root from enrollment goes to ``<data dir>/trust/root.json``. Every
file is written with :func:`agent.durable.atomic_write`, the certificate last, so a device that
stops half-way through enrolling has no identity yet and enrolls again (its key is reused).

:func:`tls_context` and :func:`device_http_client` are the client side of mTLS: the MQTT link
and every download or renewal go through them. :func:`renewal_due` is the renewal rule (pure):
at two thirds of the certificate's lifetime.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.contracts.registration import EnrollmentResponse, MqttSettings
from agent.durable import atomic_write

log = logging.getLogger(__name__)

RENEW_AT = 2 / 3  # of a certificate's lifetime


@dataclass(frozen=True)
class IdentityFiles:
    data_dir: Path

    @property
    def dir(self) -> Path:
        return self.data_dir / "identity"

    @property
    def key(self) -> Path:
        return self.dir / "device.key"

    @property
    def cert(self) -> Path:
        return self.dir / "device.crt"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def enrollment(self) -> Path:
        return self.dir / "enrollment.json"

    @property
    def tuf_root(self) -> Path:
        return self.data_dir / "trust" / "root.json"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.key, self.cert, self.ca, self.enrollment))


@dataclass(frozen=True)
class Enrolled:
    """What the device keeps from its enrollment answer."""

    mqtt: MqttSettings
    device_api: str | None


def _key(files: IdentityFiles) -> ec.EllipticCurvePrivateKey:
    """The device key, made (EC P-256, 0600) if there is none yet."""
    if not files.key.exists():
        files.dir.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        atomic_write(files.key, pem)  # its temp file is made 0600 (mkstemp) and renamed as is
    loaded = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.key}: not an EC private key")
    return loaded


def make_csr(data_dir: Path, device_id: str) -> str:
    """A PEM CSR with CN ``device_id`` for the device key (made first if missing)."""
    key = _key(IdentityFiles(data_dir))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _check_matches_key(files: IdentityFiles, cert_pem: str) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    key = _key(files)
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("the certificate the server sent is not for this device's key")
    return cert


def store_enrollment(data_dir: Path, answer: EnrollmentResponse) -> Enrolled:
    """Keep the enrollment answer: CA, TUF root, settings, then the certificate (last: its file
    is what makes the identity complete). Raises ``ValueError`` for a certificate not for this
    key, :class:`OSError`."""
    files = IdentityFiles(data_dir)
    _check_matches_key(files, answer.certificate)
    x509.load_pem_x509_certificate(answer.ca_certificate.encode())
    atomic_write(files.ca, answer.ca_certificate.encode())
    if answer.tuf_root is not None:
        files.tuf_root.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(files.tuf_root, json.dumps(answer.tuf_root).encode())
    enrolled = Enrolled(answer.mqtt, answer.device_api)
    body = {"mqtt": answer.mqtt.to_dict(), "device_api": answer.device_api}
    atomic_write(files.enrollment, json.dumps(body).encode())
    atomic_write(files.cert, answer.certificate.encode())
    return enrolled


def store_certificate(data_dir: Path, cert_pem: str) -> x509.Certificate:
    """Replace the device certificate (renewal). Raises ``ValueError``, :class:`OSError`."""
    files = IdentityFiles(data_dir)
    cert = _check_matches_key(files, cert_pem)
    atomic_write(files.cert, cert_pem.encode())
    return cert


def load_enrolled(data_dir: Path) -> Enrolled | None:
    """The stored enrollment, ``None`` if the device has no complete identity."""
    files = IdentityFiles(data_dir)
    if not files.exists():
        return None
    data: dict[str, Any] = json.loads(files.enrollment.read_text())
    return Enrolled(MqttSettings.from_dict(data["mqtt"], "enrollment.json mqtt"), data.get("device_api"))


def certificate(data_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(IdentityFiles(data_dir).cert.read_bytes())


def renewal_due(cert: x509.Certificate, now: dt.datetime) -> bool:
    """Whether ``cert`` is past :data:`RENEW_AT` of its lifetime at ``now`` (pure)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AT


def tls_context(data_dir: Path) -> ssl.SSLContext:
    """A client TLS context: the fleet CA as the only trust anchor, the device certificate and key.
    :func:`reload` puts a renewed certificate into it for the connections that follow."""
    files = IdentityFiles(data_dir)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def reload(ctx: ssl.SSLContext, data_dir: Path) -> None:
    files = IdentityFiles(data_dir)
    ctx.load_cert_chain(str(files.cert), str(files.key))


def device_http_client(
    data_dir: Path,
    *,
    timeout: httpx.Timeout | None = None,
    context: ssl.SSLContext | None = None,
    base_url: str = "",
) -> httpx.Client:
    """An httpx client that presents the device certificate and trusts only the fleet CA (for
    downloads, TUF metadata and renewal on the device listener). ``context``: one from
    :func:`tls_context` to share (and :func:`reload` after a renewal)."""
    return httpx.Client(
        base_url=base_url,
        verify=context or tls_context(data_dir),
        timeout=timeout or httpx.Timeout(30.0, connect=10.0),
        follow_redirects=True,
    )
