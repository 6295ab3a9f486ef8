"""S3-compatible object store backend (AWS S3, MinIO, moto...) via boto3.

Models are objects ``<prefix>/<64 hex digits>`` in one bucket. S3 makes a ``PutObject`` visible
whole or not at all, so writes need no temporary objects; reads are verified against the address
like every other backend's. The endpoint comes from the ``endpoint_url`` argument, the
``endpoint`` query parameter of an ``s3://bucket/prefix?endpoint=http://host:port`` URI, or the
``AIEVM_S3_ENDPOINT`` environment variable; credentials and region from boto3's usual sources.
Downloads go through a presigned URL and :func:`opml.store.download.download`, with the same
size, time and rate bounds as a hub's (:class:`~opml.store.download.FetchLimits`).
"""

from __future__ import annotations

import io
import os
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from ..bundle import Bundle
from .base import (
    ModelAbsent,
    ModelStore,
    ProgressFactory,
    StoreError,
    address_hex,
    no_progress,
    parse_address,
)
from .download import FetchLimits, download

#: Lifetime of the presigned URL of one download (it must outlast the download's deadline).
PRESIGN_SECONDS = 24 * 3600
_NAME = re.compile(r"[0-9a-f]{64}")
_S3_ERRORS = (BotoCoreError, ClientError, OSError)


class S3Store(ModelStore):
    """Models in an S3 bucket under a key prefix."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        progress: ProgressFactory = no_progress,
        limits: FetchLimits | None = None,
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise StoreError(f"not an S3 URI (want s3://bucket/prefix): {uri!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        query = parse_qs(parts.query)
        from_query = query.get("endpoint", [""])[0]
        self.endpoint_url = endpoint_url or from_query or os.environ.get("AIEVM_S3_ENDPOINT") or None
        self.progress, self.limits = progress, limits or FetchLimits()
        if client is None:
            import boto3

            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=region)
        self.client = client

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Store('s3://{self.bucket}/{self.prefix}'{where})"

    __str__ = __repr__

    def key(self, address: bytes | str) -> str:
        """Object key of a model."""
        name = parse_address(address).hex()
        return f"{self.prefix}/{name}" if self.prefix else name

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for tests and fresh deployments)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except _S3_ERRORS as e:
            if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._error("head bucket", e) from None
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except _S3_ERRORS as e2:
                raise self._error("create bucket", e2) from None

    def _read(self, address: bytes) -> bytes:
        """Download the object through a presigned URL, within :attr:`limits`.

        The GET goes through the same bounded downloader as a hub's (size, deadline, minimum
        rate, bounded decompression), so a slow or hostile endpoint costs bounded memory and time;
        boto3 only signs the URL (no request).
        """
        try:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(address)}, ExpiresIn=PRESIGN_SECONDS
            )
        except _S3_ERRORS as e:
            raise self._error(f"sign a GET of {address_hex(address)}", e) from None
        label = f"{self} object {self.key(address)}"  # never the signed URL in messages
        try:
            return download(url, address, self.limits, progress=self.progress, label=label)
        except ModelAbsent:
            raise self._missing(address) from None

    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        bar = self.progress(f"upload {address_hex(address)[:10]}", len(data))
        try:
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, self.key(address), Callback=bar.update)
        except _S3_ERRORS as e:
            raise self._error(f"put {address_hex(address)}", e) from None
        finally:
            bar.close()

    def _head(self, address: bytes | str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self.key(address)))
        except _S3_ERRORS as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return None
            raise self._error("head", e) from None

    def has(self, address: bytes | str) -> bool:
        """Whether the object exists (not verified)."""
        return self._head(address) is not None

    def size(self, address: bytes | str) -> int | None:
        """Object size, or None."""
        head = self._head(address)
        return None if head is None else int(head["ContentLength"])

    def list(self) -> list[bytes]:
        """Addresses of the model objects under the prefix."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if _NAME.fullmatch(name):
                        out.append(bytes.fromhex(name))
        except _S3_ERRORS as e:
            raise self._error("list", e) from None
        return sorted(out)

    def remove(self, address: bytes | str) -> bool:
        """Delete the object; False if it was not there."""
        if not self.has(address):
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(address))
        except _S3_ERRORS as e:
            raise self._error("delete", e) from None
        return True

    def _error(self, what: str, e: Exception) -> StoreError:
        return StoreError(f"{self}: {what} failed: {e}")


def _code(e: Exception) -> str:
    """The S3 error code of a botocore ClientError ('' for other exceptions)."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
