"""Registration against a real HTTP server: retried until it answers, refusals are final."""

from __future__ import annotations

import threading

import pytest

from agent.backoff import Backoff
from agent.contracts.registration import MqttSettings, RegistrationRequest, RegistrationResponse
from agent.errors import RegistrationError
from agent.registration import mqtt_settings, register
from tests.agent.agent_testkit import ArtifactServer
from tests.fixtures.mosquitto import _free_port

FAST = Backoff(initial=0.01, maximum=0.05)
BODY = RegistrationRequest("dev-1", "x86-64-avx2")


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


def test_a_wildcard_broker_host_means_the_servers_host(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.mqtt = {"host": "0.0.0.0", "port": 1884, "protocol": "5"}
    reg = register(artifact_server.url, BODY, backoff=FAST)
    assert reg is not None and reg.mqtt.host == "127.0.0.1"


def test_retries_until_the_server_comes_up() -> None:
    port = _free_port()
    result: list[RegistrationResponse | None] = []
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
    with pytest.raises(RegistrationError, match="HTTP 400: bad_profile: unknown profile"):
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
    with pytest.raises(RegistrationError, match=message):
        mqtt_settings(mqtt, "http://fleet:8080")


def test_a_server_without_a_broker_yet_is_asked_again(artifact_server: ArtifactServer) -> None:
    artifact_server.behaviour.mqtt = {"host": None, "port": None, "protocol": "5"}
    threading.Timer(0.3, lambda: artifact_server.behaviour.mqtt.update(host="127.0.0.1", port=1884)).start()
    reg = register(artifact_server.url, BODY, backoff=FAST)
    assert reg is not None and reg.mqtt.port == 1884 and len(artifact_server.registrations) >= 2
