"""``GET /artifacts/{target_path}``: bundle downloads, Range-aware.

Devices download on the device listener (mTLS, :mod:`fleet_server.identity.device_listener`,
``device_router``); on the operator API the same route needs the operator token (``router``).
Either serves only what a device may fetch: the ``target_path`` of a ``ready`` bundle, also at its
TUF consistent-snapshot name ``{dir}/{sha256}.{file}`` (the sha256 must be the bundle's).
Everything else in the store (source models, calibration and validation data under
``{name}/{version}/source/``) answers 404, the same as a missing file.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from fleet_server.api.deps import get_fleet, require_operator
from fleet_server.db import Bundle, ModelVersion
from fleet_server.errors import NotFoundError
from fleet_server.fleet import Fleet
from fleet_server.states import BundleStatus
from fleet_server.store import check_key
from fleet_server.store.dir_store import CONTENT_TYPE

router = APIRouter(tags=["artifacts"], dependencies=[Depends(require_operator)])
device_router = APIRouter(tags=["artifacts"])

ServedCheck = Callable[..., bool]  # (target path[, sha256]) -> whether a ready bundle has it
_HASH_PREFIX = re.compile(r"([0-9a-f]{64})\.(.+)")


def split_hash_prefix(path: str) -> tuple[str, str | None]:
    """``a/b/<sha256>.f.tar`` -> (``a/b/f.tar``, sha256); a path without the prefix -> (path, None)."""
    head, sep, base = path.rpartition("/")
    m = _HASH_PREFIX.fullmatch(base)
    if m is None:
        return path, None
    return f"{head}{sep}{m.group(2)}", m.group(1)


def is_ready_bundle(session: Session, target_path: str, sha256: str | None = None) -> bool:
    """Whether ``target_path`` is the tar of a ``ready`` bundle. One lookup through the indexes on
    (name, version) and the bundle's model version, since a bundle's path starts with its model's
    name and version (:func:`~fleet_server.bundle_tar.bundle_target_path`)."""
    parts = target_path.split("/")
    if len(parts) != 3:
        return False
    name, version, _file = parts
    found = session.scalars(
        select(Bundle.id)
        .join(ModelVersion, Bundle.model_version_id == ModelVersion.id)
        .where(
            ModelVersion.name == name,
            ModelVersion.version == version,
            Bundle.target_path == target_path,
            Bundle.status == BundleStatus.READY.value,
            *([] if sha256 is None else [Bundle.sha256 == sha256]),
        )
        .limit(1)
    ).first()
    return found is not None


def ready_bundles(fleet: Fleet = Depends(get_fleet)) -> ServedCheck:
    """The check the route applies: :func:`is_ready_bundle` on a read session."""

    def check(target_path: str, sha256: str | None = None) -> bool:
        with fleet.read_sessions() as s:
            return is_ready_bundle(s, target_path, sha256)

    return check


def download(
    target_path: str,
    request: Request,
    fleet: Fleet = Depends(get_fleet),
    served: ServedCheck = Depends(ready_bundles),
) -> Response:
    """A ready bundle's tar: 200, or 206 for a ``Range`` request (directory store); the S3 store
    answers 307 to a presigned URL. 404 for any path that is not a ready bundle's (whether or not
    the store holds it), 400 for a malformed one."""
    check_key(target_path)
    key, sha256 = split_hash_prefix(target_path)
    if not (served(key) if sha256 is None else served(key, sha256)):
        raise NotFoundError(f"no artifact {target_path!r}")
    return fleet.store.download_response(key, request)


for _r in (router, device_router):
    _r.add_api_route("/artifacts/{target_path:path}", download, methods=["HEAD"], include_in_schema=False)
    _r.add_api_route(
        "/artifacts/{target_path:path}",
        download,
        methods=["GET"],
        summary="Download a bundle",
        response_class=Response,
        responses={
            200: {"description": "The bundle's tar", "content": {CONTENT_TYPE: {}}},
            206: {"description": "The requested range of it", "content": {CONTENT_TYPE: {}}},
            307: {"description": "S3 store: a presigned URL to fetch it from"},
        },
    )
