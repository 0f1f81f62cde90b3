"""Operator tokens and roles through a started app: a viewer reads but can't deploy, a deployer
deploys but can't manage tokens, an admin can; revoked and expired tokens get 401; secrets are
stored hashed only; the server's --token stays an admin, and a server without tokens stays open."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.enroll import enroll

ROOT = Path(__file__).resolve().parents[3]
ONNX = ROOT / "examples" / "digits" / "digits_cnn.onnx"
BOOT = "boot-s3cret"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(r: Any) -> dict[str, str]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


@pytest.fixture
def client(settings: Any, start_app: Any) -> Any:
    return start_app(settings.model_copy(update={"token": BOOT}))


def make_token(client: Any, name: str, role: str, as_token: str = BOOT, **extra: Any) -> str:
    r = client.post("/api/v1/tokens", json={"name": name, "role": role, **extra}, headers=bearer(as_token))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == name and body["role"] == role and body["state"] == "active"
    secret = body["token"]
    assert isinstance(secret, str) and secret.startswith("eft_") and len(secret) > 40
    return str(secret)


def push(client: Any, token: str) -> Any:
    return client.post(
        "/api/v1/models",
        data={"name": "digits", "version": "1.0"},
        files={"file": ("model.onnx", ONNX.read_bytes())},
        headers=bearer(token),
    )


def test_a_viewer_reads_but_cannot_deploy_or_change_anything(client: Any) -> None:
    viewer = make_token(client, "dashboard", "viewer")
    assert push(client, BOOT).status_code == 201
    assert client.post("/api/v1/groups", json={"name": "lab"}, headers=bearer(BOOT)).status_code == 201

    for path in ("/api/v1/devices", "/api/v1/groups", "/api/v1/models", "/api/v1/deployments",
                 "/api/v1/groups/lab", "/api/v1/models/digits/1.0"):  # fmt: skip
        assert client.get(path, headers=bearer(viewer)).status_code == 200, path

    r = client.post(
        "/api/v1/deployments", json={"model": "digits:1.0", "group": "lab"}, headers=bearer(viewer)
    )
    assert r.status_code == 403
    err = error_of(r)
    assert err["code"] == "forbidden" and "viewer" in err["message"] and "deployer" in err["message"]
    assert "WWW-Authenticate" not in r.headers
    assert client.get("/api/v1/deployments", headers=bearer(BOOT)).json() == []  # nothing was deployed
    assert push(client, viewer).status_code == 403
    assert client.post("/api/v1/groups", json={"name": "g2"}, headers=bearer(viewer)).status_code == 403
    r = client.patch("/api/v1/groups/lab", json={"serving": {"max_batch_size": 4}}, headers=bearer(viewer))
    assert r.status_code == 403
    r = client.post(
        "/api/v1/models/digits/1.0/bundles", json={"profiles": ["x86-64-avx2"]}, headers=bearer(viewer)
    )
    assert r.status_code == 403
    assert client.get("/api/v1/tokens", headers=bearer(viewer)).status_code == 403
    assert client.get("/api/v1/audit", headers=bearer(viewer)).status_code == 403


def test_a_deployer_deploys_but_cannot_manage_tokens(client: Any) -> None:
    deployer = make_token(client, "ci", "deployer")
    assert push(client, deployer).status_code == 201
    assert client.post("/api/v1/groups", json={"name": "lab"}, headers=bearer(deployer)).status_code == 201
    r = client.patch("/api/v1/groups/lab", json={"serving": {"max_batch_size": 4}}, headers=bearer(deployer))
    assert r.status_code == 200
    r = client.post(
        "/api/v1/deployments", json={"model": "digits:1.0", "group": "lab"}, headers=bearer(deployer)
    )
    assert r.status_code == 202 and r.json()["group"] == "lab"
    assert client.get("/api/v1/deployments", headers=bearer(deployer)).status_code == 200  # and reads

    r = client.post("/api/v1/tokens", json={"name": "mine", "role": "admin"}, headers=bearer(deployer))
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert client.get("/api/v1/tokens", headers=bearer(deployer)).status_code == 403
    assert client.delete("/api/v1/tokens/ci", headers=bearer(deployer)).status_code == 403
    assert client.get("/api/v1/audit", headers=bearer(deployer)).status_code == 403
    names = [t["name"] for t in client.get("/api/v1/tokens", headers=bearer(BOOT)).json()]
    assert names == ["ci"]  # the refused create made nothing


def test_an_admin_token_manages_tokens_and_reads_the_audit_log(client: Any) -> None:
    admin = make_token(client, "ops", "admin")
    viewer = make_token(client, "v", "viewer", as_token=admin)
    assert client.get("/api/v1/devices", headers=bearer(viewer)).status_code == 200
    listed = client.get("/api/v1/tokens", headers=bearer(admin)).json()
    assert [(t["name"], t["role"], t["state"]) for t in listed] == [
        ("ops", "admin", "active"),
        ("v", "viewer", "active"),
    ]
    assert all("token" not in t for t in listed)  # secrets are never listed
    assert client.get("/api/v1/audit", headers=bearer(admin)).status_code == 200
    assert push(client, admin).status_code == 201  # admin includes deployer


def test_revoked_and_expired_tokens_get_401(client: Any, fleet: Any) -> None:
    revoked = make_token(client, "old", "admin")
    expiring = make_token(client, "temp", "deployer", expires_in_s=3600)
    assert client.get("/api/v1/devices", headers=bearer(revoked)).status_code == 200
    assert client.get("/api/v1/devices", headers=bearer(expiring)).status_code == 200

    r = client.delete("/api/v1/tokens/old", headers=bearer(BOOT))
    assert r.status_code == 200 and r.json()["state"] == "revoked" and r.json()["revoked_at"]
    assert client.delete("/api/v1/tokens/old", headers=bearer(BOOT)).status_code == 200  # again: no-op
    r = client.get("/api/v1/devices", headers=bearer(revoked))
    assert (
        r.status_code == 401 and error_of(r)["code"] == "unauthorized" and "revoked" in error_of(r)["message"]
    )
    assert r.headers["WWW-Authenticate"] == "Bearer"

    from fleet_server.db import OperatorToken, utcnow

    with fleet(client).sessions() as s:  # an hour later, as far as this token knows
        row = s.query(OperatorToken).filter_by(name="temp").one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    r = client.get("/api/v1/devices", headers=bearer(expiring))
    assert r.status_code == 401 and "expired" in error_of(r)["message"]
    states = {t["name"]: t["state"] for t in client.get("/api/v1/tokens", headers=bearer(BOOT)).json()}
    assert states == {"old": "revoked", "temp": "expired"}

    r = client.post("/api/v1/tokens", json={"name": "old", "role": "viewer"}, headers=bearer(BOOT))
    assert r.status_code == 409  # a revoked token keeps its name
    assert client.delete("/api/v1/tokens/nope", headers=bearer(BOOT)).status_code == 404
    assert client.get("/api/v1/devices", headers=bearer("eft_not-a-token")).status_code == 401
    assert client.get("/api/v1/devices").status_code == 401


def test_token_requests_are_checked(client: Any) -> None:
    for body in ({"name": "bootstrap", "role": "admin"}, {"name": "x", "role": "root"},
                 {"name": "bad name", "role": "viewer"}, {"name": "x", "role": "viewer", "expires_in_s": 0},
                 {"name": "x", "role": "viewer", "extra": 1}):  # fmt: skip
        r = client.post("/api/v1/tokens", json=body, headers=bearer(BOOT))
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", body


def test_secrets_are_stored_hashed_only(client: Any, fleet: Any) -> None:
    secret = make_token(client, "ci", "deployer")
    fl = fleet(client)
    fl.engine.dispose()  # nothing of it held in a connection
    stored = b"".join(p.read_bytes() for p in fl.settings.data_dir.glob("fleet.db*"))
    assert secret.encode() not in stored
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    assert client.get("/api/v1/devices", headers=bearer(secret)).status_code == 200  # and it works


def test_the_bootstrap_token_is_an_admin_and_devices_enroll_without_one(client: Any) -> None:
    assert client.get("/api/v1/tokens", headers=bearer(BOOT)).status_code == 200
    assert client.post("/api/v1/groups", json={"name": "enrolled"}, headers=bearer(BOOT)).status_code == 201
    made = client.post(
        "/api/v1/devices/enroll-tokens", json={"group": "enrolled", "uses": 1}, headers=bearer(BOOT)
    )
    assert made.status_code == 201, made.text
    body = {"device_id": "d1", "profile": "x86-64-avx2", "facts": {"arch": "x86_64"}}
    r = enroll(client, body, token=made.json()["token"])  # no operator token: the enrollment one
    assert r.status_code == 200, r.text
    # downloads on this listener need the operator token; devices use their mTLS listener
    assert client.get("/artifacts/x/y/z.tar").status_code == 401


def test_a_server_without_tokens_is_open_until_the_first_is_made(settings: Any, start_app: Any) -> None:
    c = start_app(settings)  # no --token
    assert c.get("/api/v1/devices").status_code == 200
    assert c.post("/api/v1/groups", json={"name": "lab"}).status_code == 201
    admin = make_token(c, "first", "admin", as_token="ignored-on-an-open-server")
    r = c.get("/api/v1/devices")
    assert r.status_code == 401  # closed from the first token on
    assert c.get("/api/v1/devices", headers=bearer(admin)).status_code == 200
    assert c.delete("/api/v1/tokens/first", headers=bearer(admin)).status_code == 200
    assert c.get("/api/v1/devices").status_code == 401  # revoking the last one does not reopen it
