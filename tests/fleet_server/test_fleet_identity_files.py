"""The fleet CA and the broker files it writes (pure parts; the broker running them is in
test_fleet_identity.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from fleet_server.broker import mosquitto_config
from fleet_server.errors import ConfigError, InvalidRequestError
from fleet_server.identity.broker_files import TlsFiles, acl_text, write_tls_files
from fleet_server.identity.ca import SERVER_CN, FleetCA, read_csr
from tests.fixtures.enroll import csr_pem


def test_the_acl_gives_devices_their_own_topics_and_the_server_the_rest() -> None:
    lines = acl_text().splitlines()
    assert lines.index(f"user {SERVER_CN}") < lines.index("topic readwrite edgefleet/v1/#")
    patterns = [ln for ln in lines if ln.startswith("pattern")]
    assert patterns == [
        "pattern read edgefleet/v1/devices/%u/desired",
        "pattern write edgefleet/v1/devices/%u/reported",
        "pattern write edgefleet/v1/devices/%u/telemetry",
        "pattern write edgefleet/v1/devices/%u/status",
    ]
    # nothing else is granted to a device: no readwrite pattern, no topic line outside the server's
    assert not [ln for ln in lines if ln.startswith("topic") and "readwrite edgefleet/v1/#" not in ln]


def test_the_mosquitto_config_with_tls_has_one_mtls_listener(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path / "tls")
    conf = mosquitto_config(1234, tmp_path, tmp_path / "log", False, files, "127.0.0.1").splitlines()
    assert [ln for ln in conf if ln.startswith("listener")] == ["listener 1234 127.0.0.1"]
    for line in (
        "allow_anonymous false",
        "require_certificate true",
        "use_identity_as_username true",
        f"crlfile {files.crl}",
        f"acl_file {files.acl}",
        f"cafile {files.ca}",
    ):
        assert line in conf
    plain = mosquitto_config(1234, tmp_path, tmp_path / "log", False).splitlines()
    assert "allow_anonymous true" in plain and not [ln for ln in plain if "require_certificate" in ln]


def test_client_certificates_carry_the_given_cn_and_expire(tmp_path: Path) -> None:
    ca = FleetCA.load_or_create(tmp_path / "ca")
    assert FleetCA.load_or_create(tmp_path / "ca").cert_pem == ca.cert_pem  # made once, then read
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    issued = ca.issue_client(read_csr(csr_pem("asked-for-another-name")), "dev-1", 30, now)
    cert = x509.load_pem_x509_certificate(issued.pem)
    assert cert.subject.rfc4514_string() == "CN=dev-1"  # the CSR's subject is not taken
    assert cert.not_valid_after_utc == now + dt.timedelta(days=30)
    cert.verify_directly_issued_by(ca.cert)


def test_a_broken_csr_or_half_a_ca_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="csr"):
        read_csr("-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(InvalidRequestError, match="at most"):
        read_csr("x" * 10_000)
    FleetCA.load_or_create(tmp_path / "ca")
    (tmp_path / "ca" / "ca.key").unlink()
    with pytest.raises(ConfigError, match=r"cannot read ca\.key and ca\.crt"):
        FleetCA.load_or_create(tmp_path / "ca")


def test_the_crl_lists_the_revoked_serials(tmp_path: Path) -> None:
    ca = FleetCA.load_or_create(tmp_path / "ca")
    issued = ca.issue_client(read_csr(csr_pem("d")), "d", 1)
    files = write_tls_files(
        ca, TlsFiles(tmp_path / "tls"), ["fleet.example"], [(issued.serial, dt.datetime.now(dt.UTC))]
    )
    crl = x509.load_pem_x509_crl(files.crl.read_bytes())
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "fleet.example" in san.get_values_for_type(x509.DNSName)
    client = x509.load_pem_x509_certificate(files.client_cert.read_bytes())
    assert client.subject.rfc4514_string() == f"CN={SERVER_CN}"
