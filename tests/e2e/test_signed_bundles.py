"""Signed bundles end to end, every part a real process (edgectl, fleet-server, Mosquitto, an
edge-agent): root and targets keys rotated while the agent runs reach it without re-enrolment;
a desired state naming an unsigned target (and a foreign host) or an absurd generation is
refused, and the device keeps serving the signed model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agent.contracts import device_topic
from fleet_server.trust import rotate
from tests.e2e.e2e_kit import DIGITS, api, edgectl, ok, triton_top1, variant
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DEVICE = "x86-s"
LABELS = {"fleet": "tuf"}


def push(url: str, model: Path, version: str) -> None:
    ok(edgectl(url, "models", "push", str(model), "--name", "digits", "--version", version,
               "--calibration", str(DIGITS / "calibration.npz")))  # fmt: skip


def deploy(url: str, version: str) -> dict[str, Any]:
    res = edgectl(url, "-o", "json", "deploy", f"digits:{version}", "--group", "signed", "--wait",
                  "--timeout", "600", "--interval", "0.5")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    dep: dict[str, Any] = json.loads(res.stdout)
    assert dep["state"] == "SUCCEEDED", dep
    return dep


def publish(broker: Any, payload: dict[str, Any], tls_dir: Path) -> None:
    """Publish a desired state with the server's own MQTT identity: the broker's ACL lets nobody
    else, so this is what a stolen server credential (or a broken broker) could send. The
    signatures must still refuse it."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls_dir / "ca.crt"))
    ctx.load_cert_chain(str(tls_dir / "fleet-server.crt"), str(tls_dir / "fleet-server.key"))
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger")
    c.tls_set_context(ctx)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(device_topic(DEVICE, "desired"), json.dumps(payload), qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


class ReportWatcher:
    """The device's reported states as the broker delivers them, read with the server's identity."""

    def __init__(self, broker: Any, tls_dir: Path) -> None:
        import ssl

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.reports: list[dict[str, Any]] = []
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls_dir / "ca.crt"))
        ctx.load_cert_chain(str(tls_dir / "fleet-server.crt"), str(tls_dir / "fleet-server.key"))
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="report-watcher")
        self.c.tls_set_context(ctx)
        self.c.on_message = lambda _c, _u, msg: self.reports.append(json.loads(msg.payload))
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.c.subscribe(device_topic(DEVICE, "reported"), qos=1)
        time.sleep(0.5)  # subscribed before anything is published

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_rotations_reach_a_running_agent_and_forged_targets_are_refused(
    make_fleet: Any, mosquitto_broker: Any, tmp_path: Path
) -> None:
    fleet = make_fleet()
    fleet.add_agent(DEVICE, "x86-64-avx2", LABELS)
    url = fleet.url
    x = np.load(DIGITS / "heldout.npz")["x"][:32]
    try:
        push(url, DIGITS / "digits_cnn.onnx", "1")
        ok(edgectl(url, "groups", "create", "signed", "--selector", "fleet=tuf"))
        deploy(url, "1")

        # The operator rotates the root and the targets keys; the server publishes root v2, v3.
        keys = fleet.keys_dir.parent
        rotate(keys, "root")
        rotate(keys, "targets")
        r = httpx.post(f"{url}/api/v1/tuf/refresh", timeout=30)
        assert r.status_code == 200 and r.json()["root_version"] == 3, r.text

        push(url, variant(DIGITS / "digits_cnn.onnx", tmp_path / "v2.onnx", 1.5), "2")
        deploy(url, "2")
        roots = fleet.root / DEVICE / "trust" / "metadata" / "root_history"
        assert sorted(p.name for p in roots.iterdir()) == ["1.root.json", "2.root.json", "3.root.json"]
        assert triton_top1(fleet.inference_url(DEVICE), "digits", x)[1] == "2"

        # Forged desired states: an absurd generation (refused unread), then one naming a target
        # the repository never signed, on a foreign host.
        tls = fleet.root / "server" / "mosquitto" / "tls"
        device = api(url, f"/api/v1/devices/{DEVICE}")
        gen = device["reported"]["generation"]
        v2 = device["reported"]["active"]
        forged = {
            "schema": "edgefleet.desired/1",
            "device_id": DEVICE,
            "generation": 2**40,
            "models": [],
        }
        publish(mosquitto_broker, forged, tls)
        model = {
            "name": "digits",
            "version": "666",
            "target": "onnx-x86",
            "precision": "int8",
            "target_path": "digits/666/onnx-x86-int8-00000000.tar",
            "url": "http://evil.invalid:666/digits.tar",
            "size": 1000,
            "sha256": "0" * 64,
        }
        seen = ReportWatcher(mosquitto_broker, tls)
        try:
            publish(mosquitto_broker, forged | {"generation": gen + 1, "models": [model]}, tls)

            # The device's own report says why (the server keeps its view: a report ahead of the
            # generation it sent is not taken, so it is read off the broker here).
            def refused() -> Any:
                return next((r for r in seen.reports if r["generation"] == gen + 1 and r.get("error")), None)

            rep = wait_until(refused, timeout=60)
        finally:
            seen.stop()
        assert rep["error"]["code"] == "UNKNOWN_TARGET", rep
        assert rep["active"] == v2
        assert api(url, f"/api/v1/devices/{DEVICE}")["active"] == v2
        assert triton_top1(fleet.inference_url(DEVICE), "digits", x)[1] == "2"
    except BaseException:
        print(fleet.logs())
        raise
