"""The dashboard in a real browser (headless Chromium over the DevTools protocol) watching a live
rollout: a real fleet-server and Mosquitto, four simulated devices speaking the real MQTT
contracts, a deployment in two waves. The page shows wave 1 of 2 in progress, then wave 2, then
SUCCEEDED with every device HEALTHY, all through its server-sent events (no reload, no polling).
The screenshot it takes mid-rollout is docs/dashboard.png."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.contracts import DesiredState, Latency, ReportedState, Status, Telemetry, UpdateState, device_topic
from edgectl.local.launcher import Launched, start_server
from tests.e2e.browser import Browser
from tests.e2e.e2e_kit import DIGITS, ROOT
from tests.fixtures.enroll import enroll, enroll_token
from tests.polling import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOKEN = "dash-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REF = "digits:7"
PROFILE = "x86-64-avx2"
DEVICES = ("cam-01", "cam-02", "cam-03", "cam-04")


class SimDevice:
    """A device as the fleet sees it over MQTT: online status, and for each desired state
    DOWNLOADING, then (once :attr:`release` is set) COMMITTED with the model active, and a
    telemetry window with its p95 latency."""

    def __init__(self, device_id: str, host: str, port: int, p95_ms: float) -> None:
        self.device_id, self.p95_ms = device_id, p95_ms
        self.release = threading.Event()
        self.told = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sim-{device_id}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(device_topic(device_id, "desired"), qos=1)
        self.client.on_message = self._on_desired
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.publish("status", Status(device_id=device_id, online=True).to_json())

    def publish(self, kind: str, payload: bytes) -> None:
        self.client.publish(device_topic(self.device_id, kind), payload, qos=1).wait_for_publish(10)

    def report(self, generation: int, state: UpdateState, active: str | None = None) -> None:
        rs = ReportedState(device_id=self.device_id, generation=generation, state=state, active=active)
        self.publish("reported", rs.to_json())

    def _on_desired(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        desired = DesiredState.from_json(msg.payload.decode())
        if not desired.models:
            return
        self.told.set()
        # Not on paho's network thread: the device waits for the test before it commits.
        threading.Thread(target=self._update, args=(desired.generation,), daemon=True).start()

    def _update(self, generation: int) -> None:
        self.report(generation, UpdateState.DOWNLOADING)
        self.release.wait(60)
        self.report(generation, UpdateState.COMMITTED, active=REF)
        tel = Telemetry(
            device_id=self.device_id, window_s=5, model=REF, requests=50, latency=Latency(p95_ms=self.p95_ms)
        )
        self.publish("telemetry", tel.to_json())

    def close(self) -> None:
        self.release.set()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def server(tmp_path: Path, mosquitto_broker: Any) -> Iterator[Launched]:
    srv = start_server(tmp_path / "server", broker=mosquitto_broker.url, extra=["--token", TOKEN])
    yield srv
    srv.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium")
    yield b
    b.close()


def prepare(url: str) -> None:
    """The model compiled for the devices' profile, their group, the devices enrolled in it."""
    with open(DIGITS / "digits_cnn.onnx", "rb") as model, open(DIGITS / "calibration.npz", "rb") as cal:
        r = httpx.post(
            f"{url}/api/v1/models",
            data={"name": "digits", "version": "7"},
            files={"file": model, "calibration": cal},
            headers=AUTH,
            timeout=60,
        )
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/api/v1/models/digits/7/bundles", json={"profiles": [PROFILE]}, headers=AUTH)
    assert r.status_code == 202, r.text
    r = httpx.post(f"{url}/api/v1/groups", json={"name": "lobby", "selector": {"site": "dash"}}, headers=AUTH)
    assert r.status_code == 201, r.text
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as admin:
        token = enroll_token(admin, group="lobby", uses=len(DEVICES))
        for d in DEVICES:
            r = enroll(admin, {"device_id": d, "profile": PROFILE, "labels": {"site": "dash"}}, token=token)
            assert r.status_code == 200, r.text

    def compiled() -> bool:
        bundles = httpx.get(f"{url}/api/v1/models/digits/7", headers=AUTH).json()["bundles"]
        assert all(b["status"] != "failed" for b in bundles), bundles
        return bool(bundles) and all(b["status"] == "ready" for b in bundles)

    wait_until(compiled, timeout=120, what="the compile", interval=0.3)


def text_of(selector: str) -> str:
    return f"((document.querySelector({json.dumps(selector)}) || {{}}).textContent || '')"


def test_dashboard_watches_a_live_rollout(
    server: Launched, browser: Browser, mosquitto_broker: Any, tmp_path: Path
) -> None:
    url = str(server.ready["url"])
    prepare(url)
    devices = [
        SimDevice(d, mosquitto_broker.host, mosquitto_broker.port, p95_ms=4.0 + i)
        for i, d in enumerate(DEVICES)
    ]
    try:
        browser.goto(f"{url}/dashboard")
        # The server has a token: the page says so, and works once it is given in the form.
        browser.wait_for(f"{text_of('#status')}.includes('needs an operator token')", what="the token prompt")
        browser.evaluate(
            f"document.getElementById('token').value = {json.dumps(TOKEN)};"
            "document.getElementById('auth').requestSubmit(); true"
        )
        browser.wait_for(f"{text_of('#conn')} === 'live'", what="the event stream")
        browser.wait_for(f"{text_of('#overall')}.includes('4/4 devices online')", what="4 devices online")
        browser.evaluate("window.__sameDocument = true")

        r = httpx.post(
            f"{url}/api/v1/deployments",
            json={
                "model": REF,
                "group": "lobby",
                "rollout": {
                    "waves": [{"count": 1}, {"percent": 100}],
                    "health_window_s": 0,
                    "max_failure_rate": 0.25,
                    "gates": {"max_error_rate": 0.05, "max_p95_regression": 1.5},
                },
            },
            headers=AUTH,
        )
        assert r.status_code == 202, r.text
        card = f"#dep-{r.json()['id']}"

        # Wave 1 (the canary) in progress: its one device downloading, the rest untouched.
        browser.wait_for(
            f"{text_of(card + ' .wave-text')} === 'wave 1 of 2'"
            f" && {text_of(card + ' .legend')}.includes('DOWNLOADING 1')",
            what="wave 1 of 2 in progress",
        )
        assert browser.evaluate(f"document.querySelector('{card}').dataset.state") == "RUNNING"
        assert "0/1 healthy · in progress" in browser.evaluate(text_of(card + " .waves"))
        assert "waiting" in browser.evaluate(text_of(card + " .waves"))
        # The gates against their thresholds: the install gate, and the quality gates asked for.
        assert "≤ 25.0%" in browser.evaluate(text_of(card + " [data-gate=failure_rate]"))
        assert "≤ 5.0%" in browser.evaluate(text_of(card + " [data-gate=error_rate]"))
        assert "≤ 1.50\u00d7" in browser.evaluate(text_of(card + " [data-gate=p95_regression]"))
        assert "off" in browser.evaluate(text_of(card + " [data-gate=prediction_psi]"))
        browser.screenshot(tmp_path / "wave-1.png")
        # The page's buttons act with the token from its form: pause, then resume.
        for act, state in (("pause", "PAUSED"), ("resume", "RUNNING")):
            browser.evaluate(f"document.querySelector('{card} button[data-act={act}]').click(); true")
            browser.wait_for(f"document.querySelector('{card}').dataset.state === '{state}'", what=state)
        audit = httpx.get(f"{url}/api/v1/audit", headers=AUTH).json()
        acts = [
            (e["action"], e["actor"], e["status"]) for e in audit if e["path"].endswith(("/pause", "/resume"))
        ]
        assert sorted(acts) == [
            ("deployments.pause", "bootstrap", 200),
            ("deployments.resume", "bootstrap", 200),
        ]
        canary = [d for d in devices if d.told.is_set()]
        assert len(canary) == 1, [d.device_id for d in canary]
        canary[0].release.set()

        # Wave 2 opens once the canary is HEALTHY; let one more device finish for the picture.
        browser.wait_for(f"{text_of(card + ' .wave-text')} === 'wave 2 of 2'", what="wave 2 of 2")
        rest = [d for d in devices if d is not canary[0]]
        wait_until(lambda: all(d.told.is_set() for d in rest), what="wave 2's desired states")
        rest[0].release.set()
        browser.wait_for(
            f"{text_of(card + ' .waves')}.includes('1/3 healthy · in progress')"
            f" && {text_of(card + ' .legend')}.includes('DOWNLOADING 2')",
            what="wave 2 part done",
        )
        # The devices table and the version spread catch up (they refresh at most every 2 s).
        browser.wait_for(
            f"{text_of('#devices')}.split('COMMITTED').length === 3"
            f" && {text_of('#spread')}.includes('2 (2 on)')",
            what="two devices on digits:7 in the table and the chart",
        )
        assert "ms" in browser.evaluate(text_of("#devices"))  # their p95 latency
        shot = browser.screenshot(tmp_path / "wave-2.png")
        shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
        for d in rest:
            d.release.set()

        browser.wait_for(
            f"document.querySelector('{card}').dataset.state === 'SUCCEEDED'"
            f" && {text_of(card + ' .legend')}.includes('HEALTHY 4')",
            timeout=30,
            what="SUCCEEDED with 4 HEALTHY",
        )
        assert "4/4 healthy" in browser.evaluate(text_of(card))
        assert "1/1 healthy · done" in browser.evaluate(text_of(card + " .waves"))
        # The version spread and the devices table follow: every device runs digits:7.
        browser.wait_for(
            f"{text_of('#spread')}.includes('digits:7') && {text_of('#spread')}.includes('4 (4 on)')"
        )
        browser.wait_for(
            "document.querySelectorAll('#devices tr').length === 4"
            f" && {text_of('#devices')}.split('{REF}').length === 5"
        )
        assert "7.0 ms" in browser.evaluate(text_of("#devices"))  # cam-04's p95
        browser.screenshot(tmp_path / "succeeded.png")
        # All of it arrived over the one event stream: same document, one snapshot, many events.
        live = browser.evaluate(
            "({same: window.__sameDocument === true, ...window.edgefleetLive, deployments: null})"
        )
        assert live["same"] is True and live["snapshots"] == 1 and live["messages"] >= 5, live
        assert "no rollout in progress" in browser.evaluate(text_of("#overall"))
    finally:
        for d in devices:
            d.close()
