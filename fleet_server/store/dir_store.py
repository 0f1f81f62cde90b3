"""Artifacts as files under one directory. Writes go to a temporary file beside the target, are
fsynced and renamed into place, so a reader sees the old object or the new one, never half."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from agent.durable import atomic_writer
from fleet_server.errors import NotFoundError, StoreError
from fleet_server.store.base import ObjectInfo, check_key

CONTENT_TYPE = "application/octet-stream"


class DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"dir:{self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_writer(dest) as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {self.root}: {exc.strerror or exc}") from exc
        return ObjectInfo(key, dest.stat().st_size)

    def stat(self, key: str) -> ObjectInfo:
        p = self._path(key)
        if not p.is_file():
            raise NotFoundError(f"no artifact {key!r}")
        return ObjectInfo(key, p.stat().st_size)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        p = self._path(key)
        try:
            return open(p, "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no artifact {key!r}") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def download_response(self, key: str, request: Request) -> Response:
        p = self._path(key)
        try:
            st = p.stat()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no artifact {key!r}") from exc
        # Starlette's FileResponse answers Range requests with 206 (and If-Range, 416) itself.
        return FileResponse(p, media_type=CONTENT_TYPE, stat_result=st, filename=p.name)
