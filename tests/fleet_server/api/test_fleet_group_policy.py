"""A group's serving and offload policies through the REST API: stored, shown, validated, and put
into its devices' desired states by the controller, a change without a new deployment."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.enroll import enroll

PUBLIC = "http://fleet.test:8080"


@pytest.fixture
def client(settings: Any, start_app: Any) -> Any:
    return start_app(settings.model_copy(update={"public_url": PUBLIC + "/"}))


def register(client: Any, device_id: str, **labels: str) -> None:
    body = {"device_id": device_id, "profile": "x86-64-avx2", "labels": labels, "facts": {}}
    assert enroll(client, body).status_code == 200


def desired(client: Any, device_id: str) -> Any:
    return client.get(f"/api/v1/devices/{device_id}").json()["desired"]


def test_policies_are_stored_shown_and_patched(client: Any) -> None:
    r = client.post(
        "/api/v1/groups",
        json={
            "name": "lab",
            "serving": {"latency_budget_ms": 40},
            "offload": {"enabled": True, "budget": 0.3},
        },
    )
    assert r.status_code == 201, r.text
    assert (r.json()["serving"], r.json()["offload"]) == (
        {"latency_budget_ms": 40.0},
        {"enabled": True, "budget": 0.3},
    )
    # A merge patch: given fields set, null ones reset, the rest (and the other policy) stay.
    r = client.patch("/api/v1/groups/lab", json={"serving": {"max_batch_size": 4}})
    assert r.status_code == 200, r.text
    g = client.get("/api/v1/groups").json()[0]
    assert (g["serving"], g["offload"]) == (
        {"latency_budget_ms": 40.0, "max_batch_size": 4},
        {"enabled": True, "budget": 0.3},
    )
    client.patch(
        "/api/v1/groups/lab", json={"serving": {"latency_budget_ms": None}, "offload": {"enabled": False}}
    )
    g = client.get("/api/v1/groups/lab").json()
    assert (g["serving"], g["offload"]) == ({"max_batch_size": 4}, {"budget": 0.3})
    client.post("/api/v1/groups", json={"name": "plain"})
    assert client.get("/api/v1/groups/plain").json()["serving"] == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"serving": {"max_batch_size": 0}}, "serving.max_batch_size: must be at least 1"),
        ({"serving": {"latency_budget_ms": -1}}, "serving.latency_budget_ms: must not be negative"),
        ({"serving": {"latency_budget": 5}}, "serving.latency_budget"),
        ({"offload": {"budget": 2}}, "offload.budget: must be between 0 and 1"),
        ({"offload": {"enabled": True, "endpoint_url": "gpu:8000"}}, "not an http(s) URL"),
        ({"offload": {"enabled": "yes"}}, "offload.enabled"),
    ],
)
def test_a_bad_policy_is_refused_with_400_naming_the_field(client: Any, body: Any, message: str) -> None:
    client.post("/api/v1/groups", json={"name": "lab"})
    for r in (
        client.patch("/api/v1/groups/lab", json=body),
        client.post("/api/v1/groups", json={"name": "other", **body}),
    ):
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_request"
        assert message in r.json()["error"]["message"], r.json()
    assert client.get("/api/v1/groups/lab").json()["serving"] == {}
    assert client.patch("/api/v1/groups/none", json={}).status_code == 404


def test_the_group_policy_reaches_the_devices_and_a_change_needs_no_new_deployment(
    client: Any, seed_bundles: Any, wait: Any
) -> None:
    register(client, "d1", site="lab")
    offload = {"enabled": True, "budget": 0.25}
    client.post("/api/v1/groups", json={"name": "lab", "selector": {"site": "lab"}, "offload": offload})
    client.post("/api/v1/groups", json={"name": "other", "devices": ["d1"], "serving": {"max_batch_size": 2}})
    seed_bundles(client)
    assert client.post("/api/v1/deployments", json={"model": "digits:1.0", "group": "lab"}).status_code == 202
    first = wait(lambda: desired(client, "d1"), what="the first desired state")
    assert first["generation"] == 1
    # The deployment's group decides (d1 is in "other" too); the cloud is this server's own.
    assert first["serving"] == {}
    assert first["offload"] == {"enabled": True, "endpoint_url": PUBLIC, "budget": 0.25}

    client.patch("/api/v1/groups/lab", json={"serving": {"latency_budget_ms": 30}})
    second = wait(lambda: (d := desired(client, "d1"))["generation"] == 2 and d, what="the policy change")
    assert second["serving"] == {"latency_budget_ms": 30.0}
    assert (second["models"], second["deployment_id"]) == (first["models"], first["deployment_id"])
    assert len(client.get("/api/v1/deployments").json()) == 1
