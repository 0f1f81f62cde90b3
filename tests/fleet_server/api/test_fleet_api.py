"""The REST API of docs/api.md through a started app (embedded MQTT 3.1.1 broker): every resource,
its errors and the error envelope, auth, OpenAPI, metrics and the dashboard."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agent.identity import device_http_client
from fleet_server.states import DeviceRolloutState
from tests.fixtures.enroll import GROUP as ENROLL_GROUP
from tests.fixtures.enroll import enroll, enroll_as_device, enroll_token

ROOT = Path(__file__).resolve().parents[3]
ONNX = ROOT / "examples" / "digits" / "digits_cnn.onnx"


@pytest.fixture
def client(settings: Any, start_app: Any) -> Any:
    return start_app(settings)


def push(
    client: Any, name: str = "digits", version: str = "1.0", data: bytes | None = None, **files: Any
) -> Any:
    body = ONNX.read_bytes() if data is None else data
    return client.post(
        "/api/v1/models",
        data={"name": name, "version": version},
        files={"file": ("model.onnx", body), **files},
    )


def register(client: Any, device_id: str, profile: str = "x86-64-avx2", **labels: str) -> Any:
    facts = {"arch": "x86_64", "inference_url": f"http://{device_id}:8000"}
    return enroll(
        client,
        {"device_id": device_id, "profile": profile, "labels": labels, "facts": facts},
    )


def other_onnx() -> bytes:
    """The digits model with another doc string: a different, valid ONNX file."""
    import onnx

    m = onnx.load(str(ONNX))
    m.doc_string = "another version"
    return m.SerializeToString()


def error_of(r: Any) -> dict[str, str]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


def test_healthz_openapi_and_docs(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/v1/models",
        "/api/v1/models/{name}/{version}",
        "/api/v1/devices/enroll",
        "/api/v1/devices/enroll-tokens",
        "/api/v1/devices/{device_id}/revoke",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}",
        "/api/v1/groups",
        "/api/v1/groups/{name}",
        "/api/v1/deployments",
        "/api/v1/deployments/{deployment_id}",
        "/artifacts/{target_path}",
        "/dashboard",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_models_push_list_get(client: Any) -> None:
    cal = io.BytesIO()
    np.savez(cal, input=np.zeros((4, 1, 8, 8), np.float32))
    r = push(client, calibration=("cal.npz", cal.getvalue()))
    assert r.status_code == 201, r.text
    mv = r.json()
    assert mv["name"] == "digits" and mv["version"] == "1.0" and len(mv["sha256"]) == 64
    assert mv["size"] == ONNX.stat().st_size and mv["calibration"] is True
    assert mv["inputs"][0]["name"] == "input" and mv["inputs"][0]["dtype"] == "float32"
    assert mv["outputs"][0]["name"] == "logits"
    assert push(client).status_code == 201  # same bytes again: idempotent
    listed = client.get("/api/v1/models").json()
    assert [(m["name"], m["version"]) for m in listed] == [("digits", "1.0")]
    detail = client.get("/api/v1/models/digits/1.0").json()
    assert detail["sha256"] == mv["sha256"] and detail["bundles"] == []


def test_models_errors(client: Any) -> None:
    assert push(client).status_code == 201
    other = ONNX.read_bytes() + b"\x00"  # different bytes under the same version
    r = push(client, data=other)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    r = push(client, version="2.0", data=b"definitely not onnx")
    assert r.status_code == 422 and "ONNX" in error_of(r)["message"]
    r = push(client, name="../etc", version="1")
    assert r.status_code == 400 and "model name" in error_of(r)["message"]
    r = push(client, version="3.0", calibration=("cal.txt", b"x"))
    assert r.status_code == 422 and "calibration" in error_of(r)["message"]
    r = client.get("/api/v1/models/digits/9.9")
    assert r.status_code == 404 and error_of(r)["message"] == "unknown model digits:9.9"
    r = client.post("/api/v1/models", data={"name": "x"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_request"


def test_devices_register_list_get(client: Any) -> None:
    r = register(client, "pi-01", "raspberry-pi-5", site="lab")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"]["device_id"] == "pi-01" and body["device"]["target"] == "tflite-arm"
    mqtt = body["mqtt"]
    assert mqtt["host"] == "127.0.0.1" and mqtt["port"] > 0 and mqtt["protocol"] == "3.1.1"
    assert mqtt["topic_root"] == "edgefleet/v1" and mqtt["keepalive"] > 0
    assert isinstance(body["server_time"], float)
    # idempotent: re-registering updates labels and facts
    assert register(client, "pi-01", "raspberry-pi-5", site="home").status_code == 200
    listed = client.get("/api/v1/devices").json()
    assert len(listed) == 1
    dev = listed[0]
    assert dev["labels"] == {"site": "home"} and dev["desired_generation"] == 0
    assert set(dev) >= {
        "device_id", "profile", "target", "labels", "online", "last_seen", "state", "active",
        "desired_generation", "reported_generation", "error", "inference_url",
    }  # fmt: skip
    assert dev["inference_url"] == "http://pi-01:8000"
    detail = client.get("/api/v1/devices/pi-01").json()
    assert detail["facts"]["arch"] == "x86_64" and detail["desired"] is None and detail["reported"] is None


def test_devices_errors(client: Any) -> None:
    r = register(client, "d1", "no-such-board")
    assert r.status_code == 400 and "unknown profile" in error_of(r)["message"]
    assert "x86-64-avx2" in error_of(r)["message"]  # lists the known ones
    r = register(client, "bad/id")
    assert r.status_code == 400 and "device id" in error_of(r)["message"]
    r = enroll(client, {"profile": "x86-64-avx2"})
    assert r.status_code == 400 and "device_id" in error_of(r)["message"]
    r = client.get("/api/v1/devices/ghost")
    assert r.status_code == 404 and error_of(r)["message"] == "unknown device 'ghost'"
    assert client.get("/api/v1/devices?group=nope").status_code == 404


def test_groups_create_list_get_and_members(client: Any) -> None:
    register(client, "a", site="lab")
    register(client, "b", site="home")
    r = client.post(
        "/api/v1/groups", json={"name": "lab", "devices": ["b", "later"], "selector": {"site": "lab"}}
    )
    assert r.status_code == 201, r.text
    assert r.json()["members"] == ["a", "b"] and r.json()["devices"] == ["b", "later"]
    r = client.post("/api/v1/groups", json={"name": "lab"})
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    register(client, "later")  # named in the group before it registered
    g = client.get("/api/v1/groups/lab").json()
    assert g["members"] == ["a", "b", "later"] and g["selector"] == {"site": "lab"}
    assert [x["name"] for x in client.get("/api/v1/groups").json()] == [ENROLL_GROUP, "lab"]
    assert [d["device_id"] for d in client.get("/api/v1/devices?group=lab").json()] == ["a", "b", "later"]
    r = client.get("/api/v1/groups/none")
    assert r.status_code == 404 and error_of(r)["message"] == "unknown group 'none'"
    r = client.post("/api/v1/groups", json={"name": "bad name"})
    assert r.status_code == 400


def test_deployments_errors(client: Any) -> None:
    client.post("/api/v1/groups", json={"name": "g", "devices": []})
    push(client)
    r = client.post("/api/v1/deployments", json={"model": "nope:1", "group": "g"})
    assert r.status_code == 404 and "nope:1" in error_of(r)["message"]
    r = client.post("/api/v1/deployments", json={"model": "digits:1.0", "group": "nope"})
    assert r.status_code == 404 and "nope" in error_of(r)["message"]
    r = client.post("/api/v1/deployments", json={"model": "digits", "group": "g"})
    assert r.status_code == 400 and "name:version" in error_of(r)["message"]
    for bad in ("999", "abc"):
        r = client.get(f"/api/v1/deployments/{bad}")
        assert r.status_code == 404 and "unknown deployment" in error_of(r)["message"]


def test_deployment_to_empty_group_waits_and_newer_one_supersedes(client: Any) -> None:
    client.post("/api/v1/groups", json={"name": "g", "devices": []})
    push(client)
    assert push(client, version="2.0", data=other_onnx()).status_code == 201
    first = client.post("/api/v1/deployments", json={"model": "digits:1.0", "group": "g"})
    assert first.status_code == 202, first.text
    d = first.json()
    assert d["state"] == "PENDING" and d["devices"] == [] and d["compile"] == []
    assert d["counts"] == {s.value: 0 for s in DeviceRolloutState}
    second = client.post("/api/v1/deployments", json={"model": "digits:2.0", "group": "g"}).json()
    assert client.get(f"/api/v1/deployments/{d['id']}").json()["state"] == "SUPERSEDED"
    assert [x["id"] for x in client.get("/api/v1/deployments").json()] == [second["id"], d["id"]]


def test_deployment_waits_for_compile_and_lists_it(client: Any, fleet: Any, wait: Any) -> None:
    fleet(client).worker.stop()  # keep the compile pending: this test is about the API shape
    register(client, "d1", site="lab")
    client.post("/api/v1/groups", json={"name": "lab", "selector": {"site": "lab"}})
    push(client)
    created = client.post("/api/v1/deployments", json={"model": "digits:1.0", "group": "lab"}).json()
    # The controller's pass (woken by the POST) takes the deployment up.
    d = wait(
        lambda: (x := client.get(f"/api/v1/deployments/{created['id']}").json())["state"] != "PENDING" and x,
        what="the controller's pass",
    )
    assert d["state"] == "COMPILING"
    assert d["compile"] == [
        {"target": "onnx-x86", "precision": "int8", "settings": "int8", "status": "pending", "error": None}
    ]
    assert [(x["device_id"], x["state"]) for x in d["devices"]] == [("d1", "PENDING")]
    assert d["counts"]["PENDING"] == 1
    bundles = client.get("/api/v1/models/digits/1.0").json()["bundles"]
    assert [(b["target"], b["status"], b["settings"]) for b in bundles] == [("onnx-x86", "pending", "int8")]


def test_compile_ahead_puts_a_failed_build_back_to_pending(
    client: Any, fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST .../bundles retries a build that failed: pending again, error cleared, queued."""
    from sqlalchemy import select

    from fleet_server.db import Bundle

    fl = fleet(client)
    fl.worker.stop()  # keep it pending: this test is about the reset, not the compile
    submitted: list[int] = []
    monkeypatch.setattr(fl.worker, "submit", submitted.append)
    push(client)
    r = client.post("/api/v1/models/digits/1.0/bundles", json={"profiles": ["x86-64-avx2"]})
    assert r.status_code == 202
    with fl.sessions() as s:
        (row,) = s.scalars(select(Bundle)).all()
        row.status, row.error = "failed", "onnx-x86: converter timed out"
        s.commit()
        bundle_id = row.id
    submitted.clear()
    r = client.post("/api/v1/models/digits/1.0/bundles", json={"profiles": ["x86-64-avx512-vnni"]})
    assert r.status_code == 202  # another profile with the same build covers the failed bundle
    assert [(b["status"], b["error"]) for b in r.json()["bundles"]] == [("pending", None)]
    assert submitted == [bundle_id]


def test_token_guards_operator_calls_only(settings: Any, start_app: Any) -> None:
    c = start_app(settings.model_copy(update={"token": "s3cret"}))
    r = c.get("/api/v1/devices")
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    assert c.get("/api/v1/devices", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/v1/devices", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # an enrollment token is the device's credential, not the operator token
    token = enroll_token(c_auth := _with_token(c, "s3cret"))
    assert enroll(c, {"device_id": "d1", "profile": "x86-64-avx2"}, token=token).status_code == 200
    assert c.post("/api/v1/devices/enroll-tokens", json={"group": "enrolled"}).status_code == 401
    assert c.get("/artifacts/x/y.tar").status_code == 401  # devices download on the mTLS listener
    assert c_auth.get("/artifacts/x/y.tar").status_code == 404
    assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200


def test_artifacts_errors(client: Any) -> None:
    r = client.get("/artifacts/none/1/x.tar")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert client.get("/artifacts/a/%2E%2E/b").status_code in (400, 404)


def test_artifacts_serve_only_ready_bundles_even_to_an_enrolled_device(
    settings: Any, start_app: Any, seed_bundles: Any, fleet: Any, tmp_path: Path
) -> None:
    """The device download route (mTLS, the device's certificate) must not hand out source models
    or calibration/validation data; without a certificate it answers nothing at all."""
    c = start_app(settings.model_copy(update={"token": "s3cret"}))
    c.headers["Authorization"] = "Bearer s3cret"  # operator calls to set things up
    cal, val = io.BytesIO(), io.BytesIO()
    np.savez(cal, input=np.zeros((4, 1, 8, 8), np.float32))
    np.savez(val, input=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    r = push(c, calibration=("cal.npz", cal.getvalue()), validation=("val.npz", val.getvalue()))
    assert r.status_code == 201, r.text
    bundles = seed_bundles(c)  # same bytes again: the stored version, plus ready bundles
    tar = next(b for (target, _), b in bundles.items() if target == "onnx-x86")["target_path"]
    token = enroll_token(c)
    del c.headers["Authorization"]  # from here on, a device: no operator token
    assert c.get(f"/artifacts/{tar}").status_code == 401  # not on the operator API without one
    enrolled = enroll_as_device(c, tmp_path / "dev", "d1", token=token)
    assert enrolled.device_api == fleet(c).device_api_url
    with pytest.raises(httpx.TransportError):  # no client certificate: the TLS handshake fails
        httpx.get(f"{enrolled.device_api}/artifacts/{tar}", verify=str(tmp_path / "dev/identity/ca.crt"))
    device = device_http_client(tmp_path / "dev", base_url=enrolled.device_api)
    store = fleet(c).store
    for key in ("digits/1.0/source/model.onnx", "digits/1.0/source/calibration.npz",
                "digits/1.0/source/validation.npz"):  # fmt: skip
        assert store.exists(key), key  # it is there: the route refuses it, not the store
        assert device.head(f"/artifacts/{key}").status_code == 404, key
        r = device.get(f"/artifacts/{key}")
        # the answer a missing file gets: nothing tells that the key exists
        assert r.status_code == 404
        assert error_of(r) == {"code": "not_found", "message": f"no artifact {key!r}"}

    full = device.get(f"/artifacts/{tar}")
    assert full.status_code == 200 and len(full.content) == bundles[("onnx-x86", "int8")]["size"]
    part = device.get(f"/artifacts/{tar}", headers={"Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == full.content[100:]
    assert device.head(f"/artifacts/{tar}").status_code == 200

    # A bundle that is not ready (yet, or any more) is not served either, though its tar exists.
    from sqlalchemy import select

    from fleet_server.db import Bundle

    with fleet(c).sessions() as s:
        row = s.scalars(select(Bundle).where(Bundle.target_path == tar)).one()
        row.status = "failed"
        s.commit()
    assert store.exists(tar) and device.get(f"/artifacts/{tar}").status_code == 404
    device.close()


def test_unknown_route_uses_the_error_envelope(client: Any) -> None:
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_metrics_and_dashboard(client: Any) -> None:
    register(client, "d1")
    text = client.get("/metrics").text
    assert "edgefleet_devices 1.0" in text
    assert 'edgefleet_deployments{state="RUNNING"} 0.0' in text
    assert "edgefleet_devices_online 0.0" in text
    assert "edgefleet_compile_duration_seconds" in text and "edgefleet_mqtt_messages" in text
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/api/v1/deployments" in html and "/api/v1/devices" in html
    # self-contained: no external scripts, styles or fonts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script src" not in html and "@import" not in html


class _with_token:
    """``client`` with the operator's bearer token on every call."""

    def __init__(self, client: Any, token: str) -> None:
        self._c, self._h = client, {"Authorization": f"Bearer {token}"}

    def get(self, url: str, **kw: Any) -> Any:
        return self._c.get(url, headers=self._h, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self._c.post(url, headers=self._h, **kw)


def test_enrollment_hands_out_the_fleets_tuf_root(client: Any, fleet: Any) -> None:
    answer = enroll(client, {"device_id": "t1", "profile": "x86-64-avx2"}).json()
    assert answer["tuf_root"] == json.loads(fleet(client).tuf.root_json())
    assert answer["tuf_root"]["signed"]["_type"] == "root"
    assert answer["mqtt"]["port"] > 0 and answer["ca_certificate"].startswith("-----BEGIN CERTIFICATE-----")
