"""The OpenAPI document declares the errors the API sends, in its envelope, and no others."""

from __future__ import annotations

from typing import Any

import pytest

from fleet_server.api.openapi import ROUTE_ERRORS


@pytest.fixture
def doc(settings: Any, start_app: Any) -> dict[str, Any]:
    return dict(start_app(settings).get("/openapi.json").json())


def test_the_route_table_names_operations_that_exist(doc: dict[str, Any]) -> None:
    ops = {(m, p) for p, methods in doc["paths"].items() for m in methods}
    assert set(ROUTE_ERRORS) <= ops


def test_errors_are_declared_in_the_envelope_and_fastapis_422_is_gone(doc: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    register = doc["paths"]["/api/v1/devices/enroll"]["post"]["responses"]
    assert {"400", "401", "403", "413"} <= set(register) and "422" not in register
    ref = register["400"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Error"
    deploy = doc["paths"]["/api/v1/deployments"]["post"]["responses"]
    assert {"400", "401", "404", "413", "422"} <= set(deploy)
    assert set(doc["paths"]["/healthz"]["get"]["responses"]) == {"200"}
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_403_is_declared_where_a_role_above_viewer_is_needed(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for path, method in (("/api/v1/deployments", "post"), ("/api/v1/models", "post"),
                         ("/api/v1/groups/{name}", "patch"), ("/api/v1/tokens", "post"),
                         ("/api/v1/tokens", "get"), ("/api/v1/tokens/{name}", "delete"),
                         ("/api/v1/audit", "get")):  # fmt: skip
        assert {"401", "403"} <= set(paths[path][method]["responses"]), (method, path)
    for path in ("/api/v1/devices", "/api/v1/groups", "/api/v1/deployments/{deployment_id}"):
        responses = paths[path]["get"]["responses"]
        assert "401" in responses and "403" not in responses, path  # any known token is a viewer
    assert "/api/v1/devices/register" not in paths  # devices enroll with a token instead
