"""The OpenAPI document says which errors each operation really answers, in the envelope they
really have (``{"error": {"code", "message"}}``, :mod:`fleet_server.api.errors`).

FastAPI, left alone, declares a 422 ``HTTPValidationError`` on every operation with parameters,
which this API never sends (its validation errors are 400s in the envelope). This replaces it:

- 400 on every operation with parameters or a body (request validation, and the domain's
  :class:`~fleet_server.errors.InvalidRequestError`);
- 413 on every operation under ``/api/`` with a JSON body (:mod:`fleet_server.api.body_limit`);
- 401 on every operation behind :func:`~fleet_server.api.deps.require_role` (those that
  declare its bearer scheme; it is sent when the server has a token or stored tokens);
- 403 on those that need more than ``viewer`` (the least role a known token has);
- the statuses in :data:`ROUTE_ERRORS`, per operation, from the domain errors its handler can
  raise (404 unknown names, 409 conflicts, 422 unusable inputs, 503 an unreachable store).

A fuzz test (``tests/fleet_server/api/test_fleet_api_fuzz.py``) holds the answers to this
document, and a unit test the table's keys to the app's operations.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from fleet_server.api.routes import api_routes, calls

DESCRIPTIONS = {
    400: "Invalid request: a parameter or body field is malformed or out of its bounds",
    401: "Missing, unknown, revoked or expired bearer token (when the server has tokens), or an "
    "unknown enrollment token",
    403: "The token's role is below the one this operation needs, an enrollment token used up or "
    "expired, or a revoked device",
    404: "Unknown model, device, group, deployment, profile or artifact",
    409: "Conflicts with what exists",
    413: "Request body over the server's bound",
    422: "Valid, but unusable: a compile it needs failed, an upload numpy can't read, or an action "
    "the deployment's state does not allow",
    429: "Too many open event streams, on the server or from this client: close one or retry later",
    503: "The artifact store can't be reached, or there is no MQTT broker yet",
}

# (method, path) → the statuses its domain errors give, beyond the generic ones above.
ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/api/v1/models"): (409, 422, 503),
    ("get", "/api/v1/models/{name}/{version}"): (404,),
    ("post", "/api/v1/models/{name}/{version}/bundles"): (404,),
    ("get", "/api/v1/devices"): (404,),
    ("post", "/api/v1/devices/enroll"): (401, 403, 503),
    ("post", "/api/v1/devices/enroll-tokens"): (404,),
    ("post", "/api/v1/devices/{device_id}/revoke"): (404,),
    ("get", "/api/v1/devices/{device_id}"): (404,),
    ("get", "/api/v1/devices/{device_id}/telemetry"): (404,),
    ("get", "/api/v1/telemetry/summary"): (404,),
    ("post", "/api/v1/groups"): (409,),
    ("get", "/api/v1/groups/{name}"): (404,),
    ("patch", "/api/v1/groups/{name}"): (404,),
    ("post", "/api/v1/deployments"): (404, 422),
    ("get", "/api/v1/deployments/{deployment_id}"): (404,),
    ("post", "/api/v1/deployments/{deployment_id}/pause"): (404, 422),
    ("post", "/api/v1/deployments/{deployment_id}/resume"): (404, 422),
    ("post", "/api/v1/deployments/{deployment_id}/abort"): (404, 422),
    ("post", "/api/v1/deployments/{deployment_id}/rollback"): (404, 422),
    ("get", "/api/v1/events"): (429,),
    ("get", "/artifacts/{target_path}"): (404, 503),
    ("post", "/api/v1/tokens"): (409,),
    ("delete", "/api/v1/tokens/{name}"): (404,),
    ("get", "/tuf/{name}"): (404, 503),
}

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def required_roles(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """(method, path) → the roles its :func:`~fleet_server.api.deps.require_role` checks ask."""
    out: dict[tuple[str, str], set[str]] = {}
    for route in api_routes(app):
        roles = {r for r in (getattr(c, "required_role", None) for c in calls(route.dependant)) if r}
        for method in route.methods:
            out[(method.lower(), route.path)] = roles
    return out


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with its error answers declared as the module docstring says."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    roles = required_roles(app)
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's HTTPValidationError: never sent
            statuses = set(ROUTE_ERRORS.get((method, path), ()))
            if op.get("parameters") or "requestBody" in op:
                statuses.add(400)
            body = op.get("requestBody", {}).get("content", {})
            if path.startswith("/api/") and "application/json" in body:
                statuses.add(413)
            if op.get("security"):
                statuses.add(401)
            if roles.get((method, path), set()) - {"viewer"}:
                statuses.add(403)
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`document` (built once, on the first request for it) as the app's schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
