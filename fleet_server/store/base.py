"""The artifact store interface: a flat key → bytes store for source models, calibration files and
bundles, plus the HTTP answer that hands a stored object to a device.

Keys are ``/``-separated relative paths (``digits/1.0/onnx-x86-int8-1a2b3c4d.tar``); every
implementation refuses absolute keys and ``..`` with :class:`~fleet_server.errors.InvalidRequestError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from starlette.requests import Request
from starlette.responses import Response

from fleet_server.errors import InvalidRequestError

# Used with fullmatch: "$" alone would also accept a trailing newline.
_KEY_PART = re.compile(r"[A-Za-z0-9._+:=-]+")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class ArtifactStore(Protocol):
    """Where artifacts live. Implementations: :class:`~fleet_server.store.dir_store.DirStore`,
    :class:`~fleet_server.store.s3_store.S3Store`."""

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Store the file at ``path`` under ``key``, replacing any object there; readers never see
        a partial object. Raises :class:`StoreError`."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Raises :class:`NotFoundError` when there is no such object."""
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> BinaryIO:
        """The object's bytes, to read and close. Raises :class:`NotFoundError`."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...

    def download_response(self, key: str, request: Request) -> Response:
        """The HTTP answer that delivers the object, honouring ``Range`` (206) directly or through
        a redirect. Raises :class:`NotFoundError`."""
        ...

    def describe(self) -> str:
        """Where the store is, for logs."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`InvalidRequestError`."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_PART.fullmatch(p) for p in parts):
        raise InvalidRequestError(f"not a valid artifact key: {key!r}")
    return key
