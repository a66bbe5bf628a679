"""S3Store helpers: the boto3 client, and S3 answers mapped onto the error tree."""

from __future__ import annotations

from typing import Any, BinaryIO

from ..errors import ObjectNotFound, StorageError, UsageError
from .base import is_valid_key

# S3 answers S3Store handles itself; they never leave S3Store.


class Precondition(StorageError):
    """The object already exists (412)."""


class ConcurrentWrite(StorageError):
    """A conditional write of the same key is in flight (409)."""


class RangeNotSatisfiable(StorageError):
    """The range starts past the end of the object (416)."""


def client_error(
    exc: Any, key: str | None, action: str, where: str
) -> StorageError | ObjectNotFound:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket"):
        return ObjectNotFound(f"object {key} is missing from {where}")
    if code in ("PreconditionFailed", "412") or status == 412:
        return Precondition()
    if code == "ConditionalRequestConflict" or status == 409:
        return ConcurrentWrite()
    if code == "InvalidRange" or status == 416:
        return RangeNotSatisfiable()
    if status == 403 or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
        return StorageError(
            f"{where} refused access ({code or status}) to {action} {key or 'objects'}",
            hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy",
        )
    return StorageError(
        f"cannot {action} {key or 'objects'} in {where}: {code} {err.get('Message', '')}"
    )


def key_from_name(rest: str) -> str | None:
    """'ab/cdef...' -> 'abcdef...'; None for anything that is not an object."""
    head, sep, tail = rest.partition("/")
    if sep and len(head) == 2 and is_valid_key(head + tail):
        return head + tail
    return None


def remaining(src: BinaryIO) -> int | None:
    """Bytes left in a seekable stream, or None when it cannot tell."""
    try:
        if not src.seekable():
            return None
        here = src.tell()
        end = src.seek(0, 2)
        src.seek(here)
        return end - here
    except (OSError, ValueError):
        return None


def make_client(
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    pool_size: int,
) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise UsageError("S3 storage needs boto3", hint="pip install 'modelvc[s3]'") from exc
    # Bounded timeouts and few retries: a dead endpoint must fail fast, not hang.
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=pool_size,
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )
