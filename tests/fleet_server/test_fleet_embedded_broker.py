"""Without Mosquitto: the embedded amqtt broker (MQTT 3.1.1, plain subscriptions) carries a whole
rollout, and ``--broker auto`` picks it when the binary is missing."""

from __future__ import annotations

from typing import Any

from agent.contracts import UpdateState
from tests.fixtures.enroll import enroll

REF = "digits:1.0"


def test_rollout_over_the_embedded_broker(
    settings: Any, start_app: Any, seed_bundles: Any, make_device: Any, wait: Any, fleet: Any
) -> None:
    c = start_app(settings)  # broker="embedded", mqtt_protocol="3.1.1"
    seed_bundles(c)
    ep = fleet(c).mqtt
    assert (ep.kind, ep.protocol) == ("embedded", "3.1.1")
    r = enroll(c, {"device_id": "d1", "profile": "x86-64-avx2", "labels": {"a": "1"}})
    mqtt = r.json()["mqtt"]
    assert (mqtt["host"], mqtt["port"], mqtt["protocol"]) == ("127.0.0.1", ep.port, "3.1.1")
    c.post("/api/v1/groups", json={"name": "g", "selector": {"a": "1"}})
    dep = c.post("/api/v1/deployments", json={"model": REF, "group": "g"}).json()
    # Connect once the controller's pass has published, so the device gets the retained message.
    wait(lambda: c.get(f"/api/v1/deployments/{dep['id']}").json()["state"] == "RUNNING", what="RUNNING")
    dev = make_device("d1", mqtt["host"], mqtt["port"], protocol="3.1.1")
    desired = wait(dev.latest, what="retained desired over amqtt")
    assert desired["generation"] == 1 and dev.retained[0] is True
    dev.report(1, UpdateState.DOWNLOADING)
    dev.report(1, UpdateState.COMMITTED, active=REF)
    wait(lambda: c.get(f"/api/v1/deployments/{dep['id']}").json()["state"] == "SUCCEEDED", what="SUCCEEDED")
    assert c.get("/api/v1/devices/d1").json()["reported_generation"] == 1


def test_auto_falls_back_to_the_embedded_broker(
    settings: Any, start_app: Any, fleet: Any, tmp_path: Any
) -> None:
    c = start_app(
        settings.model_copy(
            update={"broker": "auto", "mqtt_protocol": "5", "mosquitto_bin": str(tmp_path / "none")}
        )
    )
    ep = fleet(c).mqtt
    if ep.kind == "mosquitto":  # a mosquitto on PATH was found instead
        assert ep.protocol == "5"
    else:
        assert (ep.kind, ep.protocol) == ("embedded", "3.1.1")
        assert enroll(c, {"device_id": "x", "profile": "x86-64-avx2"}).json()["mqtt"]["protocol"] == "3.1.1"


def test_auto_starts_mosquitto_as_a_child_when_present(
    settings: Any, start_app: Any, fleet: Any, make_device: Any
) -> None:
    import shutil

    import pytest

    if not shutil.which("mosquitto") and not __import__("os").path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed")
    c = start_app(settings.model_copy(update={"broker": "auto", "mqtt_protocol": "5"}))
    fl = fleet(c)
    ep = fl.mqtt
    assert (ep.kind, ep.host, ep.protocol) == ("mosquitto", "127.0.0.1", "5") and ep.port != 1883
    assert fl.bridge.connected.is_set()
    conf = (fl.settings.data_dir / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    # mTLS with ACLs, one listener, no anonymous one (tests/fleet_server/test_fleet_identity.py connects)
    assert f"listener {ep.port} 127.0.0.1" in conf and "require_certificate true" in conf
    assert "allow_anonymous false" in conf and sum(x.startswith("listener") for x in conf) == 1
    assert ep.tls
