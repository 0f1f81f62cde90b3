"""TUF metadata over HTTP (open to devices, as TUF metadata is public and signed), and the admin
call that runs a re-signing pass at once.

- ``GET /tuf/{N}.root.json``, ``/tuf/root.json``, ``/tuf/timestamp.json``,
  ``/tuf/{N}.snapshot.json``, ``/tuf/{N}.targets.json``: from the artifact store (the S3 store
  answers 307 to a presigned URL). Targets are downloaded from ``/artifacts/`` at their
  consistent-snapshot names (``{dir}/{sha256}.{file}``).
- ``POST /api/v1/tuf/refresh`` (admin): reload the key directory (after ``edgectl keys
  rotate``), sign in ready bundles, re-sign the timestamp.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fleet_server.api.deps import get_fleet, require_role
from fleet_server.errors import NotFoundError
from fleet_server.fleet import Fleet

router = APIRouter(tags=["tuf"])

_METADATA = re.compile(r"(?:[1-9][0-9]{0,9}\.)?(?:root|targets|snapshot|timestamp)\.json")


@router.head("/tuf/{name}", include_in_schema=False, dependencies=[Depends(require_role("viewer"))])
@router.get(
    "/tuf/{name}",
    dependencies=[Depends(require_role("viewer"))],
    summary="TUF metadata",
    response_class=Response,
    responses={
        200: {"description": "The signed metadata file", "content": {"application/json": {}}},
        307: {"description": "S3 store: a presigned URL to fetch it from"},
    },
)
def metadata(name: str, request: Request, fleet: Fleet = Depends(get_fleet)) -> Response:
    """One TUF metadata file; 404 for anything else."""
    if not _METADATA.fullmatch(name):
        raise NotFoundError(f"no TUF metadata {name!r}")
    resp = fleet.store.download_response(f"tuf/{name}", request)
    resp.headers["cache-control"] = "no-cache"
    resp.headers["content-type"] = "application/json"
    return resp


# Devices fetch metadata on the device listener (mTLS, their certificate); here, on the operator
# listener, it takes an operator token like the artifacts do when the server has tokens.
device_router = APIRouter(tags=["tuf"])
device_router.add_api_route("/tuf/{name}", metadata, methods=["GET", "HEAD"], include_in_schema=False)


@router.post(
    "/api/v1/tuf/refresh",
    summary="Reload TUF keys and re-sign",
    dependencies=[Depends(require_role("admin"))],
)
def refresh(fleet: Fleet = Depends(get_fleet)) -> dict[str, int]:
    """Reload the key directory, sign in ready bundles and re-sign the timestamp now. Answers
    the root and timestamp versions now served."""
    fleet.tuf.refresh(force=True)
    repo = fleet.tuf.repo
    return {
        "root_version": repo.root.signed.version,
        "timestamp_version": repo.timestamp.signed.version if repo.timestamp else 0,
    }
