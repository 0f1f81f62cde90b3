"""The fleet CA (``cryptography`` x509): device client certificates, the server's own MQTT client
certificate, the broker's server certificate and the certificate revocation list.

The CA key and certificate live in one directory (``<data dir>/identity`` unless the server is
given another): ``ca.key`` (0600) and ``ca.crt``, made on first start. A device's private key is
never here: a device sends a CSR (its key stays on the device) and gets back a certificate whose
subject CN is its device id. :data:`SERVER_CN` is reserved for the fleet server's own identity,
which alone may publish desired states (see :mod:`fleet_server.identity.broker_files`).

Pure apart from :meth:`FleetCA.load_or_create`, which reads or writes the CA files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.durable import atomic_write
from fleet_server.errors import ConfigError, InvalidRequestError

SERVER_CN = "fleet-server"  # the fleet server's MQTT identity; no device may take this id
CA_CN = "EdgeFleet fleet CA"
CA_DAYS = 3650
SERVER_CERT_DAYS = 365
CSR_MAX_BYTES = 8 * 1024  # a P-256 or RSA-4096 CSR in PEM is well under 4 KiB


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    """A certificate just signed: its PEM, serial and validity."""

    pem: bytes
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def read_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    """A CSR from PEM, with a valid self-signature. Raises :class:`InvalidRequestError`."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > CSR_MAX_BYTES:
        raise InvalidRequestError(f"csr: {len(data)} bytes, at most {CSR_MAX_BYTES}")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise InvalidRequestError(f"csr: not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise InvalidRequestError("csr: its signature does not match its public key")
    return csr


class FleetCA:
    """Signs with the CA key. Build it with :meth:`load_or_create` or from key and certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, directory: Path) -> None:
        self.key = key
        self.cert = cert
        self.dir = directory

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @classmethod
    def load_or_create(cls, directory: Path) -> FleetCA:
        """The CA in ``directory``, made there first if neither file exists.

        Raises :class:`ConfigError` when only one of the two files is there or one can't be read."""
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if not key_path.exists() and not cert_path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            key = new_key()
            atomic_write(key_path, key_pem(key))  # the temp file is made 0600, and stays so
            atomic_write(cert_path, _self_signed(key).public_bytes(serialization.Encoding.PEM))
        try:
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"fleet CA in {directory}: cannot read ca.key and ca.crt ({exc}); give both, or neither "
                "to have the server make a new CA (every device then enrolls again)"
            ) from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"fleet CA in {directory}: ca.key is not an EC key")
        return cls(loaded, cert, directory)

    def _builder(self, cn: str, public_key: object, days: float, now: dt.datetime) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            # a device clock a little behind: back-dated 5 minutes, or 5% of a short lifetime
            .not_valid_before(now - min(dt.timedelta(minutes=5), dt.timedelta(days=days) * 0.05))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
        )

    def _sign(self, builder: x509.CertificateBuilder) -> Issued:
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(
            cert.public_bytes(serialization.Encoding.PEM),
            cert.serial_number,
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )

    def issue_client(
        self, csr: x509.CertificateSigningRequest, cn: str, days: float, now: dt.datetime | None = None
    ) -> Issued:
        """A TLS client certificate for ``csr``'s public key with subject CN ``cn`` (whatever the
        CSR's subject says), valid ``days``."""
        builder = self._builder(cn, csr.public_key(), days, now or utc_now()).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return self._sign(builder)

    def issue_server(
        self, key: ec.EllipticCurvePrivateKey, hosts: Iterable[str], days: float = SERVER_CERT_DAYS
    ) -> Issued:
        """A TLS server certificate for ``key`` naming ``hosts`` (DNS names or IP addresses)."""
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        first = next(iter(dict.fromkeys(hosts)), "localhost")
        builder = (
            self._builder(first, key.public_key(), days, utc_now())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        return self._sign(builder)

    def issue_server_client(self, key: ec.EllipticCurvePrivateKey, days: float = SERVER_CERT_DAYS) -> Issued:
        """The fleet server's own MQTT client certificate (CN :data:`SERVER_CN`)."""
        builder = self._builder(SERVER_CN, key.public_key(), days, utc_now()).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return self._sign(builder)

    def crl(self, revoked: Iterable[tuple[int, dt.datetime]], now: dt.datetime | None = None) -> bytes:
        """The CRL (PEM) listing ``(serial, revoked_at)``; valid for a year, since it is rewritten
        on every revocation and at every start."""
        now = now or utc_now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=365))
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_CN)])
    now = utc_now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def cert_serial(pem_or_der: bytes) -> int:
    """The serial number of a certificate in PEM or DER."""
    if pem_or_der.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(pem_or_der).serial_number
    return x509.load_der_x509_certificate(pem_or_der).serial_number


def cert_cn(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
