"""``/api/v1/models``: upload source models, list them, see their bundles."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy import select

from fleet_server.api import views
from fleet_server.api.deps import get_fleet, require_role
from fleet_server.api.schemas import CompileAhead
from fleet_server.builds import request_builds
from fleet_server.catalog import Upload, add_model_version, get_model_version
from fleet_server.db import ModelVersion
from fleet_server.fleet import Fleet
from fleet_server.states import BundleStatus

router = APIRouter(prefix="/api/v1/models", tags=["models"])
VIEWER, DEPLOYER = [Depends(require_role("viewer"))], [Depends(require_role("deployer"))]


def _save(upload: UploadFile, dest_dir: Path, name: str) -> Upload:
    path = dest_dir / name
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return Upload(path, upload.filename or name)


@router.post("", status_code=201, summary="Upload a model version", dependencies=DEPLOYER)
def push_model(
    file: UploadFile = File(..., description="the ONNX model"),
    name: str = Form(...),
    version: str = Form(...),
    calibration: UploadFile | None = File(None, description="calibration samples (.npz/.npy)"),
    validation: UploadFile | None = File(None, description="held-out samples (.npz, labels in y)"),
    min_agreement: float | None = Form(None, description="top-1 agreement gate against FP32 (0..1)"),
    fleet: Fleet = Depends(get_fleet),
) -> JSONResponse:
    """Store ``name:version`` (201). Pushing the same bytes again answers 201 with the stored
    version; other bytes under an existing version: 409; not an ONNX model: 422."""
    uploads = fleet.settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=uploads)))
        model = _save(file, tmp, "model.onnx")
        cal = (
            _save(calibration, tmp, "calibration")
            if calibration is not None and calibration.filename
            else None
        )
        val = _save(validation, tmp, "validation") if validation is not None and validation.filename else None
        with fleet.sessions() as s:
            mv = add_model_version(s, fleet.store, name, version, model, cal, val, min_agreement)
            body = views.model_version(mv)
    return JSONResponse(body, status_code=201)


@router.get("", summary="List model versions", dependencies=VIEWER)
def list_models(fleet: Fleet = Depends(get_fleet)) -> list[dict[str, Any]]:
    with fleet.read_sessions() as s:
        rows = s.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.created_at))
        return [views.model_summary(mv) for mv in rows]


@router.get("/{name}/{version}", summary="A model version and its bundles", dependencies=VIEWER)
def get_model(name: str, version: str, fleet: Fleet = Depends(get_fleet)) -> dict[str, Any]:
    """404 for an unknown model version."""
    with fleet.read_sessions() as s:
        mv = get_model_version(s, name, version)
        return views.model_version_detail(mv)


@router.post(
    "/{name}/{version}/bundles",
    status_code=202,
    summary="Compile ahead of a rollout",
    dependencies=DEPLOYER,
)
def compile_ahead(
    name: str, version: str, body: CompileAhead, fleet: Fleet = Depends(get_fleet)
) -> JSONResponse:
    """Start the compiles the given device profiles need (202), so a later deployment finds its
    bundles ready. Builds already made or running are reused; a build that failed is compiled
    again (``pending``, its error cleared). 404 for an unknown model version or profile. Follow
    progress with ``GET /api/v1/models/{name}/{version}``."""
    with fleet.sessions() as s:
        mv = get_model_version(s, name, version)
        pending = [
            b.id
            for b in request_builds(s, mv.id, body.profiles, fleet.profiles)
            if b.status == BundleStatus.PENDING.value
        ]
        s.commit()
        s.refresh(mv)
        answer = views.model_version_detail(mv)
    for bundle_id in pending:
        fleet.worker.submit(bundle_id)
    return JSONResponse(answer, status_code=202)
