"""Enrollment against a real HTTP server: retried until it answers, refusals are final; the key
is made on the device and the certificate kept with it (agent.identity)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from agent import identity
from agent.backoff import Backoff
from agent.contracts.registration import EnrollmentRequest, EnrollmentResponse, MqttSettings
from agent.errors import EnrollmentError
from agent.registration import enroll as register
from agent.registration import mqtt_settings
from tests.agent.agent_testkit import ArtifactServer
from tests.fixtures.mosquitto import _free_port

FAST = Backoff(initial=0.01, maximum=0.05)
CSR_DIR = Path(tempfile.mkdtemp(prefix="test-registration-"))
BODY = EnrollmentRequest("tok", "dev-1", "x86-64-avx2", identity.make_csr(CSR_DIR, "dev-1"))


def test_registration_returns_the_mqtt_settings(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.mqtt = {
        "host": "broker.local",
        "port": 8883,
        "protocol": "3.1.1",
        "keepalive": 30,
    }
    reg = register(artifact_server.url, BODY, backoff=FAST)
    assert reg is not None
    assert reg.mqtt == MqttSettings("broker.local", 8883, "3.1.1", 30)
    assert artifact_server.registrations == [BODY.to_dict()]
    assert "PRIVATE KEY" not in str(artifact_server.registrations)  # only the CSR went out


def test_a_wildcard_broker_host_means_the_servers_host(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.mqtt = {"host": "0.0.0.0", "port": 1884, "protocol": "5"}
    reg = register(artifact_server.url, BODY, backoff=FAST)
    assert reg is not None and reg.mqtt.host == "127.0.0.1"


def test_retries_until_the_server_comes_up() -> None:
    port = _free_port()
    result: list[EnrollmentResponse | None] = []
    t = threading.Thread(
        target=lambda: result.append(register(f"http://127.0.0.1:{port}", BODY, backoff=FAST))
    )
    t.start()
    threading.Event().wait(0.3)  # a few refused connections first
    server = ArtifactServer(port)
    server.behaviour.mqtt = {"host": "127.0.0.1", "port": 1883, "protocol": "5"}
    server.start()
    try:
        t.join(10)
        assert result and result[0] is not None and result[0].mqtt.port == 1883
        assert server.registrations == [BODY.to_dict()]
    finally:
        server.stop()


def test_server_errors_are_retried(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.mqtt = {"host": "h", "port": 1, "protocol": "5"}
    artifact_server.behaviour.register_status = 503
    stop = threading.Event()
    t = threading.Timer(0.3, lambda: setattr(artifact_server.behaviour, "register_status", 200))
    t.start()
    reg = register(artifact_server.url, BODY, backoff=FAST, stop=stop)
    assert reg is not None and len(artifact_server.registrations) >= 2


def test_a_refusal_is_final(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.register_status = 400
    with pytest.raises(EnrollmentError, match="HTTP 400: bad_profile: unknown profile"):
        register(artifact_server.url, BODY, backoff=FAST)
    assert len(artifact_server.registrations) == 1


def test_stop_ends_the_retries() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert register(f"http://127.0.0.1:{_free_port()}", BODY, backoff=FAST, stop=stop) is None


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"host": "h", "port": 1, "protocol": "4"}, "MQTT protocol '4'"),
        ({"host": "h", "port": 1, "topic_root": "other/v9"}, "topic root 'other/v9'"),
        ({"host": "h"}, "bad mqtt settings"),
    ],
)
def test_unusable_mqtt_settings_are_refused(mqtt: dict, message: str) -> None:
    with pytest.raises(EnrollmentError, match=message):
        mqtt_settings(mqtt, "http://fleet:8080")


def test_a_server_without_a_broker_yet_is_asked_again(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.mqtt = {"host": None, "port": None, "protocol": "5"}
    threading.Timer(0.3, lambda: artifact_server.behaviour.mqtt.update(host="127.0.0.1", port=1884)).start()
    reg = register(artifact_server.url, BODY, backoff=FAST)
    assert reg is not None and reg.mqtt.port == 1884 and len(artifact_server.registrations) >= 2


def test_the_key_stays_on_the_device_and_the_certificate_is_kept(
    tmp_path: Path, artifact_server: ArtifactServer
) -> None:
    artifact_server.behaviour.mqtt = {"host": "127.0.0.1", "port": 1884, "protocol": "5", "tls": True}
    artifact_server.behaviour.tuf_root = {"signed": {"_type": "root", "version": 1}, "signatures": []}
    body = EnrollmentRequest("tok", "dev-2", "x86-64-avx2", identity.make_csr(tmp_path, "dev-2"))
    answer = register(artifact_server.url, body, backoff=FAST)
    assert answer is not None
    enrolled = identity.store_enrollment(tmp_path, answer)
    files = identity.IdentityFiles(tmp_path)
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    key_pem = files.key.read_bytes()
    assert b"PRIVATE KEY" in key_pem and key_pem not in json.dumps(artifact_server.registrations).encode()
    assert identity.certificate(tmp_path).subject.rfc4514_string() == "CN=dev-2"
    assert enrolled.mqtt.tls and identity.load_enrolled(tmp_path) == enrolled
    assert json.loads(files.tuf_root.read_text())["signed"]["_type"] == "root"
    # a certificate for another key is refused, and the stored one stays
    other = EnrollmentRequest("tok", "dev-2", "x86-64-avx2", identity.make_csr(tmp_path / "other", "dev-2"))
    foreign = register(artifact_server.url, other, backoff=FAST)
    assert foreign is not None
    kept = files.cert.read_bytes()
    with pytest.raises(ValueError, match="not for this device's key"):
        identity.store_certificate(tmp_path, foreign.certificate)
    assert files.cert.read_bytes() == kept


def test_renewal_is_due_at_two_thirds_of_the_lifetime(
    tmp_path: Path, artifact_server: ArtifactServer
) -> None:
    import datetime as dt

    artifact_server.behaviour.mqtt = {"host": "h", "port": 1, "protocol": "5"}
    body = EnrollmentRequest("tok", "dev-3", "x86-64-avx2", identity.make_csr(tmp_path, "dev-3"))
    answer = register(artifact_server.url, body, backoff=FAST)
    assert answer is not None
    identity.store_enrollment(tmp_path, answer)
    cert = identity.certificate(tmp_path)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert not identity.renewal_due(cert, start + (end - start) * 0.6)
    assert identity.renewal_due(cert, start + (end - start) * 0.7)
    assert identity.renewal_due(cert, end + dt.timedelta(days=1))
