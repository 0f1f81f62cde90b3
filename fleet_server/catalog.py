"""The model catalog: storing uploaded source models (with their calibration and validation data)
as immutable ``name:version`` entries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.runtimes import sha256_file
from fleet_server.db import ModelVersion
from fleet_server.errors import ConflictError, InvalidRequestError, NotFoundError, UnusableError
from fleet_server.names import check_name
from fleet_server.onnx_info import inspect_onnx
from fleet_server.store import ArtifactStore

DATA_SUFFIXES = (".npz", ".npy")


@dataclass(frozen=True)
class Upload:
    """A file received with a request, saved to ``path``; ``filename`` is what the client called it."""

    path: Path
    filename: str


def _check_data(upload: Upload, what: str) -> str:
    """The suffix of a calibration/validation upload, after checking numpy can read it safely."""
    import numpy as np

    suffix = Path(upload.filename).suffix.lower() or ".npz"
    if suffix not in DATA_SUFFIXES:
        raise UnusableError(f"{what} {upload.filename!r}: expected a .npz or .npy file")
    try:
        if suffix == ".npz":
            with np.load(upload.path, allow_pickle=False) as data:
                empty = not data.files
        else:
            np.load(upload.path, allow_pickle=False, mmap_mode="r")
            empty = False
    except Exception as exc:
        raise UnusableError(f"{what} {upload.filename!r}: not readable by numpy ({exc})") from exc
    if empty:
        raise UnusableError(f"{what} {upload.filename!r}: the .npz holds no arrays")
    return suffix


def get_model_version(session: Session, name: str, version: str) -> ModelVersion:
    mv = session.scalars(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    ).first()
    if mv is None:
        raise NotFoundError(f"unknown model {name}:{version}")
    return mv


def add_model_version(
    session: Session,
    store: ArtifactStore,
    name: str,
    version: str,
    model: Upload,
    calibration: Upload | None = None,
    validation: Upload | None = None,
    min_agreement: float | None = None,
) -> ModelVersion:
    """Store a model version and commit. Uploading the same bytes again returns the existing
    entry. Raises :class:`InvalidRequestError` (bad name, version or gate),
    :class:`ConflictError` (that version exists with other bytes), :class:`UnusableError` (not
    ONNX, unreadable data files), :class:`StoreError`."""
    check_name(name, "model name")
    check_name(version, "model version")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise InvalidRequestError(f"min_agreement {min_agreement} is not between 0 and 1")
    sha = sha256_file(model.path)
    existing = session.scalars(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    ).first()
    if existing is not None:
        if existing.sha256 != sha:
            raise ConflictError(
                f"model {name}:{version} exists with other bytes (sha256 {existing.sha256[:12]}…); "
                "push it as a new version"
            )
        return existing
    # End the read transaction before the slow part (ONNX check, store uploads): on SQLite it
    # holds the write lock, which the controller and the MQTT bridge are waiting for.
    session.rollback()
    inputs, outputs = inspect_onnx(model.path)
    cal_suffix = _check_data(calibration, "calibration") if calibration else None
    val_suffix = _check_data(validation, "validation") if validation else None
    prefix = f"{name}/{version}/source"
    source_key = f"{prefix}/model.onnx"
    store.put_file(source_key, model.path)
    cal_key = val_key = None
    if calibration and cal_suffix:
        cal_key = f"{prefix}/calibration{cal_suffix}"
        store.put_file(cal_key, calibration.path)
    if validation and val_suffix:
        val_key = f"{prefix}/validation{val_suffix}"
        store.put_file(val_key, validation.path)
    mv = ModelVersion(
        name=name,
        version=version,
        sha256=sha,
        size=model.path.stat().st_size,
        source_key=source_key,
        calibration_key=cal_key,
        validation_key=val_key,
        min_agreement=min_agreement,
        inputs=inputs,
        outputs=outputs,
    )
    session.add(mv)
    try:
        session.commit()
    except IntegrityError:
        # Another request stored the same version meanwhile: same bytes is fine, others conflict.
        session.rollback()
        winner = get_model_version(session, name, version)
        if winner.sha256 != sha:
            raise ConflictError(f"model {name}:{version} exists with other bytes") from None
        return winner
    return mv
