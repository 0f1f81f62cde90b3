"""Artifact stores: the directory store and the S3 store (moto's server over HTTP), each through
the interface and through ``GET /artifacts/...`` with ``Range``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet_server.api import artifacts
from fleet_server.api.errors import install_error_handlers
from fleet_server.errors import InvalidRequestError, NotFoundError
from fleet_server.store import DirStore, S3Store

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable


def serve(store: Any) -> TestClient:
    """Just the artifacts endpoint over ``store``, with the real error handler. Every key counts as
    a ready bundle's: the store is under test here (the gate is tested in test_fleet_api)."""
    app = FastAPI()
    app.include_router(artifacts.device_router)  # the devices' route (mTLS is the listener's)
    app.dependency_overrides[artifacts.ready_bundles] = lambda: lambda _key: True
    install_error_handlers(app)
    app.state.fleet = SimpleNamespace(store=store)
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def payload_file(tmp_path: Path) -> Path:
    p = tmp_path / "bundle.tar"
    p.write_bytes(PAYLOAD)
    return p


def exercise(store: Any, payload_file: Path) -> None:
    key = "digits/1.0/onnx-x86-int8-0123abcd.tar"
    assert not store.exists(key)
    with pytest.raises(NotFoundError):
        store.stat(key)
    with pytest.raises(NotFoundError):
        store.open(key)
    info = store.put_file(key, payload_file)
    assert info.size == len(PAYLOAD) and store.stat(key).size == len(PAYLOAD) and store.exists(key)
    with store.open(key) as fh:
        assert fh.read() == PAYLOAD
    payload_file.write_bytes(b"replaced")
    store.put_file(key, payload_file)  # overwrite
    with store.open(key) as fh:
        assert fh.read() == b"replaced"
    store.delete(key)
    store.delete(key)  # deleting twice is fine
    assert not store.exists(key)
    for bad in ("../x", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(InvalidRequestError):
            store.exists(bad)


def test_dir_store_interface(tmp_path: Path, payload_file: Path) -> None:
    store = DirStore(tmp_path / "artifacts")
    exercise(store, payload_file)
    leftovers = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert leftovers == []  # no temp files from the atomic writes


def test_dir_store_download_honours_range(tmp_path: Path, payload_file: Path) -> None:
    store = DirStore(tmp_path / "artifacts")
    key = "m/1/onnx-x86-int8-deadbeef.tar"
    store.put_file(key, payload_file)
    c = serve(store)
    full = c.get(f"/artifacts/{key}")
    assert full.status_code == 200 and full.content == PAYLOAD
    assert full.headers["accept-ranges"] == "bytes"
    part = c.get(f"/artifacts/{key}", headers={"Range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == PAYLOAD[1000:]
    assert part.headers["content-range"] == f"bytes 1000-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
    mid = c.get(f"/artifacts/{key}", headers={"Range": "bytes=10-19"})
    assert mid.status_code == 206 and mid.content == PAYLOAD[10:20]
    head = c.head(f"/artifacts/{key}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(PAYLOAD)
    missing = c.get("/artifacts/m/1/none.tar")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_s3_store_interface(s3_endpoint: str, payload_file: Path) -> None:
    store = S3Store(f"b-{uuid.uuid4().hex[:8]}", prefix="fleet/a", endpoint_url=s3_endpoint)
    exercise(store, payload_file)


def test_s3_store_redirects_to_presigned_url_that_serves_range(s3_endpoint: str, payload_file: Path) -> None:
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    store = S3Store(bucket, prefix="p", endpoint_url=s3_endpoint)
    key = "m/1/onnx-x86-int8-deadbeef.tar"
    store.put_file(key, payload_file)
    c = serve(store)
    r = c.get(f"/artifacts/{key}")
    assert r.status_code == 307
    url = r.headers["location"]
    assert url.startswith(f"{s3_endpoint}/{bucket}/p/{key}?")  # path-style, under the prefix
    assert "X-Amz-Signature=" in url
    with httpx.Client() as h:
        full = h.get(url)
        assert full.status_code == 200 and full.content == PAYLOAD
        part = h.get(url, headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == PAYLOAD[1000:2000]
    assert c.get("/artifacts/m/1/none.tar").status_code == 404


def test_s3_store_through_a_running_server(
    s3_endpoint: str, settings: Any, start_app: Any, tmp_path: Path
) -> None:
    """``--store s3://bucket/prefix --s3-endpoint``: uploads land in the bucket."""

    bucket = f"b-{uuid.uuid4().hex[:8]}"
    c = start_app(settings.model_copy(update={"store": f"s3://{bucket}/fleet", "s3_endpoint": s3_endpoint}))
    onnx_path = Path(__file__).resolve().parents[3] / "examples" / "digits" / "digits_cnn.onnx"
    with open(onnx_path, "rb") as fh:
        r = c.post("/api/v1/models", data={"name": "digits", "version": "1"}, files={"file": fh})
    assert r.status_code == 201, r.text
    check = S3Store(bucket, prefix="fleet", endpoint_url=s3_endpoint, create_bucket=False)
    assert check.stat("digits/1/source/model.onnx").size == os.path.getsize(onnx_path)
