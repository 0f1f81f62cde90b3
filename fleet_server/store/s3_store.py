"""Artifacts in an S3 bucket (or any S3-compatible store: MinIO, moto, Ceph). Downloads answer
307 to a presigned URL, so bundle bytes never pass through the server and the store serves
``Range`` itself. Credentials come from boto3's usual chain (environment, profile, instance role).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, BinaryIO, cast

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from fleet_server.errors import NotFoundError, StoreError
from fleet_server.store.base import ObjectInfo, check_key

log = logging.getLogger(__name__)
PRESIGN_EXPIRY_S = 3600


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        create_bucket: bool = True,
        presign_expiry_s: int = PRESIGN_EXPIRY_S,
    ) -> None:
        import boto3  # boto3 takes ~0.3 s to import; only S3 users pay for it
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.presign_expiry_s = presign_expiry_s
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                s3={"addressing_style": "path"}, signature_version="s3v4", retries={"mode": "standard"}
            ),
        )
        if create_bucket:
            self._ensure_bucket(region)

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _ensure_bucket(self, region: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(f"cannot reach bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot reach S3 ({self.describe()}): {exc}") from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
            log.info("created bucket %s", self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot create bucket {self.bucket}: {exc}") from exc

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, Key=self._key(key), **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise NotFoundError(f"no artifact {key!r}") from exc
            raise StoreError(f"S3 {what} {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"S3 {what} {key}: {exc}") from exc

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # S3 makes an object visible only once the upload completed: no partial reads.
            self._client.upload_file(str(path), self.bucket, self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"S3 put {key}: {exc}") from exc
        return ObjectInfo(key, path.stat().st_size)

    def stat(self, key: str) -> ObjectInfo:
        head = self._call("stat", key, self._client.head_object)
        return ObjectInfo(key, int(head["ContentLength"]))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def open(self, key: str) -> BinaryIO:
        obj = self._call("get", key, self._client.get_object)
        return cast(BinaryIO, obj["Body"])

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object)

    def presigned_url(self, key: str) -> str:
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=self.presign_expiry_s,
            )
        )

    def download_response(self, key: str, request: Request) -> Response:
        self.stat(key)  # a 404 from us beats a redirect to an S3 error page
        return RedirectResponse(self.presigned_url(key), status_code=307)
