"""Bounded REST input: JSON bodies read whole are capped (413), every stored field a client sends
is held to its bound (400 naming it), error answers never echo a whole input, and a compile's
error is stored truncated with a marker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from fleet_server.db import Bundle, ModelVersion
from fleet_server.limits import FIELD_LIMITS
from tests.fixtures.enroll import enroll


@pytest.fixture
def client(settings: Any, start_app: Any) -> Any:
    return start_app(settings)


def register(client: Any, **body: Any) -> Any:
    return enroll(client, {"device_id": "d1", "profile": "x86-64-avx2"} | body)


def test_a_json_body_over_the_bound_is_413_with_or_without_a_length(client: Any) -> None:
    big = json.dumps({"device_id": "d1", "profile": "x86-64-avx2", "facts": {"x": "y" * 3_000_000}})
    r = client.post("/api/v1/devices/enroll", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bound holds on what arrives
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536].encode()

    r = client.post("/api/v1/groups", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert client.get("/api/v1/devices").json() == []
    assert register(client).status_code == 200  # under the bound all is as before


def test_a_deeply_nested_body_is_400_not_500(client: Any) -> None:
    nested = (
        '{"device_id": "d1", "profile": "x86-64-avx2", "facts": {"a": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    )
    r = client.post("/api/v1/devices/enroll", content=nested, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"labels": {f"k{i}": "v" for i in range(FIELD_LIMITS.labels + 1)}}, "labels"),
        ({"labels": {"k" * 64: "v"}}, "label"),
        ({"labels": {"site": "v" * 257}}, "label"),
        ({"facts": {"blob": "z" * 20_000}}, "facts"),
    ],
)
def test_registration_fields_over_their_bounds_are_400(client: Any, body: dict[str, Any], field: str) -> None:
    r = register(client, **body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]["message"]
    assert len(r.content) < 2000  # the answer names the field, not its value
    assert client.get("/api/v1/devices").json() == []


def test_an_inference_url_too_long_for_its_column_is_not_recorded(client: Any) -> None:
    r = register(client, facts={"inference_url": "http://d1/" + "p" * 600})
    assert r.status_code == 200 and r.json()["device"]["inference_url"] is None


def test_an_invalid_field_is_named_in_a_bounded_answer(client: Any) -> None:
    r = register(client, device_id="#" * 500_000)
    assert r.status_code == 400 and len(r.content) < 2000


@pytest.mark.parametrize(
    "body",
    [
        {"name": "g", "selector": {"site": "v" * 257}},
        {"name": "g", "selector": {f"k{i}": "v" for i in range(FIELD_LIMITS.labels + 1)}},
        {"name": "g", "devices": ["d" * 129]},
        {"name": "g" * 129},
    ],
)
def test_group_fields_over_their_bounds_are_400(client: Any, body: dict[str, Any]) -> None:
    r = client.post("/api/v1/groups", json=body)
    assert r.status_code == 400, r.text
    assert client.get("/api/v1/groups").json() == []


def test_a_compile_error_is_stored_truncated_with_a_marker(client: Any, fleet: Any) -> None:
    fl = fleet(client)
    with fl.sessions() as s:
        mv = ModelVersion(name="m", version="1", sha256="0" * 64, size=1, source_key="k")
        s.add(mv)
        s.flush()
        b = Bundle(model_version_id=mv.id, target="onnx-x86", precision="int8", settings_key="k", profile="p")
        s.add(b)
        s.commit()
        bundle_id = b.id
    fl.worker._finish(bundle_id, error="onnx-x86: " + "e" * 1_000_000)
    with fl.read_sessions() as s:
        error = s.scalars(select(Bundle.error)).one()
    assert len(error) == FIELD_LIMITS.error_message_chars
    assert error.startswith("onnx-x86: eee") and "truncated" in error
