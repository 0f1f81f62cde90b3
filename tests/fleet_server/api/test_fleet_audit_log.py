"""The audit log through a started app: every mutating call lands in it, refused ones too, with
who, what, where and the answer's status; reads don't; its rows can't be changed or deleted,
neither through the ORM nor in SQL, and no route changes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from fleet_server.db import AppendOnlyError, AuditEntry
from tests.fixtures.enroll import enroll

BOOT = "boot-s3cret"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(settings: Any, start_app: Any) -> Any:
    return start_app(settings.model_copy(update={"token": BOOT}))


def make_token(client: Any, name: str, role: str) -> str:
    r = client.post("/api/v1/tokens", json={"name": name, "role": role}, headers=bearer(BOOT))
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def entries(client: Any, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit", params=params, headers=bearer(BOOT))
    assert r.status_code == 200, r.text
    return list(r.json())


def who_what(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["actor"], e["role"], e["method"], e["path"], e["action"], e["target"], e["status"])


def test_successful_and_refused_mutating_calls_are_recorded(client: Any) -> None:
    deployer = make_token(client, "ci", "deployer")
    viewer = make_token(client, "dash", "viewer")
    assert client.post("/api/v1/groups", json={"name": "lab"}, headers=bearer(deployer)).status_code == 201
    assert client.post("/api/v1/groups", json={"name": "lab2"}, headers=bearer(viewer)).status_code == 403
    body = {"model": "digits:1.0", "group": "lab"}
    assert client.post("/api/v1/deployments", json=body).status_code == 401
    assert client.post("/api/v1/deployments", json=body, headers=bearer("eft_guess")).status_code == 401
    assert client.delete("/api/v1/tokens/dash", headers=bearer(BOOT)).status_code == 200
    assert client.post("/api/v1/groups", json={"name": "lab3"}, headers=bearer(viewer)).status_code == 401
    assert client.patch("/api/v1/groups/nope", json={}, headers=bearer(deployer)).status_code == 404
    assert client.get("/api/v1/groups", headers=bearer(deployer)).status_code == 200  # a read: not logged

    got = [who_what(e) for e in reversed(entries(client))]
    assert got == [
        ("bootstrap", "admin", "POST", "/api/v1/tokens", "tokens.create", "ci", 201),
        ("bootstrap", "admin", "POST", "/api/v1/tokens", "tokens.create", "dash", 201),
        ("ci", "deployer", "POST", "/api/v1/groups", "groups.create", "lab", 201),
        ("dash", "viewer", "POST", "/api/v1/groups", "groups.create", "lab2", 403),
        ("anonymous", None, "POST", "/api/v1/deployments", "deployments.create", "digits:1.0", 401),
        ("unknown", None, "POST", "/api/v1/deployments", "deployments.create", "digits:1.0", 401),
        ("bootstrap", "admin", "DELETE", "/api/v1/tokens/dash", "tokens.delete", "dash", 200),
        ("dash", "viewer", "POST", "/api/v1/groups", "groups.create", "lab3", 401),  # revoked
        ("ci", "deployer", "PATCH", "/api/v1/groups/nope", "groups.update", "nope", 404),
    ]
    newest = entries(client)[0]
    assert newest["client"] == "testclient"  # the TestClient's address
    assert newest["at"].endswith("Z") and newest["id"] > 0


def test_a_new_deployment_is_recorded_under_its_id_and_secrets_never_are(client: Any, fleet: Any) -> None:
    deployer = make_token(client, "ci", "deployer")
    onnx = Path(__file__).resolve().parents[3] / "examples" / "digits" / "digits_cnn.onnx"
    r = client.post(
        "/api/v1/models",
        data={"name": "digits", "version": "1.0"},
        files={"file": ("model.onnx", onnx.read_bytes())},
        headers=bearer(deployer),
    )
    assert r.status_code == 201
    client.post("/api/v1/groups", json={"name": "lab"}, headers=bearer(deployer))
    r = client.post(
        "/api/v1/deployments", json={"model": "digits:1.0", "group": "lab"}, headers=bearer(deployer)
    )
    assert r.status_code == 202
    latest, _group, pushed = entries(client, limit=3)
    assert (latest["action"], latest["target"]) == ("deployments.create", str(r.json()["id"]))
    assert (pushed["action"], pushed["target"], pushed["status"]) == ("models.create", "digits:1.0", 201)
    with fleet(client).read_sessions() as s:
        logged = " ".join(str(v) for e in s.scalars(select(AuditEntry)) for v in vars(e).values())
    assert deployer not in logged  # the token created at the start is in no row


def test_refusals_before_any_route_are_recorded(client: Any) -> None:
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    r = client.post(
        "/api/v1/groups", content=big, headers={**bearer(BOOT), "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = client.post(
        "/api/v1/groups", content=b"{not json", headers={**bearer(BOOT), "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert client.post("/api/v1/nowhere", json={}).status_code == 404
    assert client.post("/api/v1/groups", json={"name": "enrolled"}, headers=bearer(BOOT)).status_code == 201
    token = client.post(
        "/api/v1/devices/enroll-tokens", json={"group": "enrolled"}, headers=bearer(BOOT)
    ).json()["token"]
    r = enroll(
        client, {"device_id": "d1", "profile": "x86-64-avx2", "facts": {"arch": "x86_64"}}, token=token
    )
    assert r.status_code == 200, r.text
    got = [(e["actor"], e["action"], e["target"], e["status"]) for e in reversed(entries(client))]
    assert got == [
        ("bootstrap", "groups.create", None, 413),
        ("bootstrap", "groups.create", None, 400),
        ("anonymous", "unrouted", None, 404),
        ("bootstrap", "groups.create", "enrolled", 201),
        ("bootstrap", "devices.enroll-tokens", None, 201),
        ("d1", "devices.enroll", "d1", 200),
    ]
    assert token not in str(entries(client))  # no secret lands in the log


def test_the_log_pages_newest_first(client: Any) -> None:
    for i in range(5):
        client.post("/api/v1/groups", json={"name": f"g{i}"}, headers=bearer(BOOT))
    first = entries(client, limit=2)
    assert [e["target"] for e in first] == ["g4", "g3"]
    second = entries(client, limit=2, before=first[-1]["id"])
    assert [e["target"] for e in second] == ["g2", "g1"]
    assert [e["target"] for e in entries(client, limit=10, before=second[-1]["id"])] == ["g0"]
    assert client.get("/api/v1/audit", params={"limit": 0}, headers=bearer(BOOT)).status_code == 400


def test_no_route_edits_or_deletes_the_log(client: Any) -> None:
    client.post("/api/v1/groups", json={"name": "lab"}, headers=bearer(BOOT))
    (entry,) = entries(client)
    for method in ("PUT", "PATCH", "DELETE"):
        assert client.request(method, "/api/v1/audit", headers=bearer(BOOT)).status_code == 405
        assert client.request(method, f"/api/v1/audit/{entry['id']}", headers=bearer(BOOT)).status_code in (
            404,
            405,
        )
    assert [e["id"] for e in entries(client)][-1] == entry["id"]  # still there, unchanged
    assert entries(client)[-1] == entry


def test_audit_rows_cannot_be_changed_or_deleted(client: Any, fleet: Any) -> None:
    client.post("/api/v1/groups", json={"name": "lab"}, headers=bearer(BOOT))
    fl = fleet(client)
    with fl.sessions() as s:
        row = s.scalars(select(AuditEntry)).one()
        row.status = 200
        with pytest.raises(AppendOnlyError):
            s.commit()
        s.rollback()
    with fl.sessions() as s:
        s.delete(s.scalars(select(AuditEntry)).one())
        with pytest.raises(AppendOnlyError):
            s.commit()
        s.rollback()
    with fl.sessions() as s:
        with pytest.raises(AppendOnlyError):
            s.execute(update(AuditEntry).values(actor="someone-else"))
        with pytest.raises(AppendOnlyError):
            s.execute(delete(AuditEntry))
    with fl.engine.connect() as conn:  # plain SQL: the database's triggers refuse it
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text("UPDATE audit_log SET actor = 'someone-else'"))
        conn.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text("DELETE FROM audit_log"))
        conn.rollback()
    (e,) = entries(client)
    assert (e["actor"], e["status"], e["target"]) == ("bootstrap", 201, "lab")
