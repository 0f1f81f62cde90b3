"""The artifact store: one small interface, a directory and an S3 implementation.

``open_store(spec, ...)`` builds the one the settings name.
"""

from __future__ import annotations

from fleet_server.config import StoreSpec
from fleet_server.store.base import ArtifactStore, ObjectInfo, check_key
from fleet_server.store.dir_store import DirStore
from fleet_server.store.s3_store import S3Store

__all__ = ["ArtifactStore", "DirStore", "ObjectInfo", "S3Store", "check_key", "open_store"]


def open_store(
    spec: StoreSpec, s3_endpoint: str | None = None, s3_region: str = "us-east-1"
) -> ArtifactStore:
    """The store ``spec`` describes. Raises :class:`StoreError` when S3 can't be reached."""
    if spec.kind == "s3":
        assert spec.bucket is not None
        return S3Store(spec.bucket, spec.prefix, endpoint_url=s3_endpoint, region=s3_region)
    assert spec.path is not None
    return DirStore(spec.path)
