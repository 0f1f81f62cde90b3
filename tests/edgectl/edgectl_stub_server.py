"""A small in-memory fleet server implementing the part of docs/api.md that edgectl calls.

It stands in for ``fleet_server.app.create_app`` until that is usable; it is a real FastAPI app
served by uvicorn on a real 127.0.0.1 socket (see ``conftest.py``), so edgectl's HTTP client,
multipart upload and error mapping run exactly as they would against the real server. Replace it
with the real app once the fleet server runs without a broker.

Deployments don't progress by themselves: a test queues snapshots with :meth:`Fleet.script`, and
each ``GET /api/v1/deployments/{id}`` applies the next one.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

API = "/api/v1"


class StubError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


@dataclass
class Fleet:
    """The stub's state; tests read and arrange it directly."""

    token: str | None = None
    models: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    scripts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    broken: bool = False  # answer every API call with a plain-text 500
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        fresh = Fleet()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def add_device(self, device_id: str, profile: str = "x86-64-avx2", **extra: Any) -> dict[str, Any]:
        target = {"x86-64-avx2": "onnx-x86", "raspberry-pi-5": "tflite-arm"}.get(profile, "onnx-x86")
        device = {
            "device_id": device_id,
            "profile": profile,
            "target": target,
            "labels": {},
            "online": True,
            "last_seen": time.time(),
            "state": "IDLE",
            "active": None,
            "desired_generation": 0,
            "reported_generation": 0,
            "error": None,
            "inference_url": f"http://{device_id}:8000",
            **extra,
        }
        self.devices[device_id] = device
        return device

    def script(self, deployment_id: str, *snapshots: dict[str, Any]) -> None:
        """Queue changes that successive GETs of ``deployment_id`` apply, one per GET."""
        self.scripts[deployment_id] = list(snapshots)

    def members(self, group: dict[str, Any]) -> list[str]:
        chosen = set(group["devices"])
        for d in self.devices.values():
            sel = group["selector"]
            if sel and all(d["labels"].get(k) == v for k, v in sel.items()):
                chosen.add(d["device_id"])
        return sorted(chosen)


def create_stub_app(fleet: Fleet) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(StubError)
    async def _error(_request: Request, exc: StubError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        fleet.requests.append((request.method, request.url.path, request.headers.get("authorization")))
        if request.url.path.startswith(API):
            if fleet.broken:
                return PlainTextResponse("Internal Server Error\n", status_code=500)
            if fleet.token and request.headers.get("authorization") != f"Bearer {fleet.token}":
                body = {"error": {"code": "unauthorized", "message": "missing or bad token"}}
                return JSONResponse(body, status_code=401)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(f"{API}/models", status_code=201)
    async def push_model(
        file: Annotated[UploadFile, File()],
        name: Annotated[str, Form()],
        version: Annotated[str, Form()],
        calibration: Annotated[UploadFile | None, File()] = None,
        validation: Annotated[UploadFile | None, File()] = None,
        min_agreement: Annotated[float | None, Form()] = None,
    ) -> dict[str, Any]:
        data = await file.read()
        if not data.startswith(b"\x08"):  # an ONNX ModelProto starts with ir_version (field 1, varint)
            raise StubError(422, "not_onnx", f"{file.filename} is not an ONNX model")
        digest = hashlib.sha256(data).hexdigest()
        existing = fleet.models.get((name, version))
        if existing and existing["sha256"] != digest:
            raise StubError(409, "conflict", f"model {name}:{version} exists with other bytes")
        fleet.uploads.append(
            {
                "name": name,
                "version": version,
                "size": len(data),
                "calibration": None if calibration is None else len(await calibration.read()),
                "validation": None if validation is None else len(await validation.read()),
                "min_agreement": min_agreement,
            }
        )
        model = existing or {
            "name": name,
            "version": version,
            "sha256": digest,
            "size": len(data),
            "created_at": "2024-06-01T12:00:00Z",
            "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
        }
        fleet.models[(name, version)] = model
        return model

    @app.get(f"{API}/models")
    def list_models() -> list[dict[str, Any]]:
        keys = ("name", "version", "sha256", "size", "created_at")
        return [{k: m[k] for k in keys} for m in fleet.models.values()]

    @app.get(f"{API}/devices")
    def list_devices(group: str | None = None) -> list[dict[str, Any]]:
        if group is None:
            return list(fleet.devices.values())
        if group not in fleet.groups:
            raise StubError(404, "not_found", f"unknown group {group!r}")
        return [fleet.devices[i] for i in fleet.members(fleet.groups[group]) if i in fleet.devices]

    @app.get(f"{API}/devices/{{device_id}}")
    def get_device(device_id: str) -> dict[str, Any]:
        if device_id not in fleet.devices:
            raise StubError(404, "not_found", f"unknown device {device_id!r}")
        return {**fleet.devices[device_id], "facts": {"arch": "x86_64"}, "desired": None, "reported": None}

    @app.post(f"{API}/groups", status_code=201)
    def create_group(body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not name:
            raise StubError(400, "bad_request", "a group needs a name")
        if name in fleet.groups:
            raise StubError(409, "conflict", f"group {name!r} exists")
        group = {"name": name, "devices": body.get("devices", []), "selector": body.get("selector", {})}
        for key in ("serving", "offload"):  # as the real server shows them: nulls are defaults
            if key in body:
                group[key] = {k: v for k, v in body[key].items() if v is not None}
        fleet.groups[name] = group
        return {**group, "members": fleet.members(group)}

    @app.patch(f"{API}/groups/{{name}}")
    def update_group(name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the policies, as the real server does it (no validation here)."""
        if name not in fleet.groups:
            raise StubError(404, "not_found", f"unknown group {name!r}")
        group = fleet.groups[name]
        for key in ("serving", "offload"):
            if key in body:
                merged = {**group.get(key, {}), **body[key]}
                group[key] = {k: v for k, v in merged.items() if v is not None}
        return {**group, "members": fleet.members(group)}

    @app.get(f"{API}/groups")
    def list_groups() -> list[dict[str, Any]]:
        return [{**g, "members": fleet.members(g)} for g in fleet.groups.values()]

    @app.post(f"{API}/deployments", status_code=202)
    def create_deployment(body: dict[str, Any]) -> dict[str, Any]:
        name, _, version = str(body.get("model", "")).partition(":")
        if (name, version) not in fleet.models:
            raise StubError(404, "not_found", f"unknown model {body.get('model')!r}")
        if body.get("group") not in fleet.groups:
            raise StubError(404, "not_found", f"unknown group {body.get('group')!r}")
        members = fleet.members(fleet.groups[body["group"]])
        dep_id = str(next(fleet._ids))
        targets = sorted({fleet.devices[m]["target"] for m in members if m in fleet.devices})
        dep = {
            "id": dep_id,
            "model": body["model"],
            "group": body["group"],
            "state": "PENDING",
            "error": None,
            "created_at": "2024-06-01T12:00:00Z",
            "updated_at": "2024-06-01T12:00:00Z",
            "compile": [
                {"target": t, "precision": "int8", "status": "pending", "error": None} for t in targets
            ],
            "devices": [
                {"device_id": m, "state": "PENDING", "active": None, "error": None, "updated_at": None}
                for m in members
            ],
            "counts": {"PENDING": len(members)},
        }
        fleet.deployments[dep_id] = dep
        return dep

    @app.get(f"{API}/deployments")
    def list_deployments() -> list[dict[str, Any]]:
        return sorted(fleet.deployments.values(), key=lambda d: -int(d["id"]))

    @app.get(f"{API}/deployments/{{dep_id}}")
    def get_deployment(dep_id: str) -> dict[str, Any]:
        if dep_id not in fleet.deployments:
            raise StubError(404, "not_found", f"unknown deployment {dep_id!r}")
        dep = fleet.deployments[dep_id]
        queue = fleet.scripts.get(dep_id)
        if queue:
            dep.update(queue.pop(0))
            counts: dict[str, int] = {}
            for d in dep["devices"]:
                counts[d["state"]] = counts.get(d["state"], 0) + 1
            dep["counts"] = counts
        return dep

    return app
