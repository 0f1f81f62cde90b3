"""``GET /artifacts/{target_path}``: bundle downloads (open to devices), Range-aware."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fleet_server.api.deps import get_fleet
from fleet_server.fleet import Fleet

router = APIRouter(tags=["artifacts"])


@router.head("/artifacts/{target_path:path}", include_in_schema=False)
@router.get("/artifacts/{target_path:path}", summary="Download a bundle")
def download(target_path: str, request: Request, fleet: Fleet = Depends(get_fleet)) -> Response:
    """The stored object: 200, or 206 for a ``Range`` request (directory store); the S3 store
    answers 307 to a presigned URL. 404 for an unknown path, 400 for a malformed one."""
    return fleet.store.download_response(target_path, request)
