"""How the audit log names a call: its action from the method and route template, its target from
path parameters, the answer or the request (pure functions)."""

from __future__ import annotations

from fleet_server.audit import action_name, target_of
from fleet_server.roles import allows


def test_action_names() -> None:
    assert action_name("POST", "/api/v1/groups") == "groups.create"
    assert action_name("PATCH", "/api/v1/groups/{name}") == "groups.update"
    assert action_name("DELETE", "/api/v1/tokens/{name}") == "tokens.delete"
    assert action_name("PUT", "/api/v1/keys/{role}") == "keys.replace"
    assert action_name("POST", "/api/v1/devices/enroll") == "devices.enroll"
    assert action_name("POST", "/api/v1/models/{name}/{version}/bundles") == "models.bundles"
    assert action_name("POST", "/api/v1/deployments/{deployment_id}/pause") == "deployments.pause"
    assert action_name("POST", None) == "unrouted"
    assert action_name("POST", "/v2/models/{name}/infer") == "unrouted"


def test_targets() -> None:
    assert target_of({"name": "digits", "version": "1.0"}) == "digits:1.0"
    assert target_of({}, {"name": "lab"}, {"id": 7, "name": "ignored"}) == "7"  # the new id wins
    assert target_of({}, {"model": "digits:1.0", "group": "lab"}) == "digits:1.0"
    assert target_of({}, None, {"device": {"device_id": "d1"}, "mqtt": {}}) == "d1"
    assert target_of({}, {"name": "ci", "role": "admin"}, {"name": "ci", "token": "eft_x"}) == "ci"
    assert target_of({}, [1, 2], "text") is None
    assert target_of({}, {"flag": True}) is None


def test_a_higher_role_holds_the_lower_ones() -> None:
    assert allows("admin", "viewer") and allows("admin", "deployer") and allows("admin", "admin")
    assert allows("deployer", "viewer") and not allows("deployer", "admin")
    assert not allows("viewer", "deployer") and not allows("root", "viewer") and not allows("admin", "root")
