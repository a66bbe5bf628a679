"""S3Store: objects in an S3-compatible bucket (AWS, SeaweedFS, MinIO, ...).

    s3://bucket/<prefix>ab/cdef0123...   (key "abcdef0123...", same fan-out as local)

boto3 is imported lazily: the core install does not depend on it. Write-once uses a
conditional put (If-None-Match: *), so of two writers racing on one key exactly one
stores it and the other gets False. Multipart uploads (above 64 MiB) cannot carry that
condition portably, so they check `has` first; a race there is harmless since both
writers upload identical content under a content id.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, BinaryIO

from ..errors import ObjectNotFound, StorageError, UsageError
from ._s3util import (
    ConcurrentWrite,
    Precondition,
    RangeNotSatisfiable,
    client_error,
    key_from_name,
    make_client,
    remaining,
)
from .base import ObjectInfo, check_key

MiB = 1 << 20
MULTIPART_THRESHOLD = 64 * MiB
PART_SIZE = 16 * MiB
HEAD_THREADS = 16


class S3Store:
    list_page_size = 1000  # S3's maximum; tests shrink it to exercise has_many's paths

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        client: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket:
            raise UsageError("an S3 store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is None:
            client = make_client(
                endpoint_url,
                region,
                access_key,
                secret_key,
                connect_timeout,
                read_timeout,
                max_attempts,
                HEAD_THREADS + 4,
            )
        self._client = client
        self.endpoint = str(getattr(client.meta, "endpoint_url", None) or endpoint_url)

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r})"

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}{key[:2]}/{key[2:]}"

    # writes

    def put(self, key: str, data: bytes) -> bool:
        if len(data) > MULTIPART_THRESHOLD:  # a single PUT tops out at 5 GiB
            return self.put_file(key, io.BytesIO(data))
        name = self.object_key(key)
        for attempt in range(5):
            try:
                with self._translated(key, "write"):
                    self._client.put_object(
                        Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*"
                    )
                return True
            except Precondition:
                return False
            except ConcurrentWrite:  # another conditional put of this key is in flight
                time.sleep(0.05 * 2**attempt)
        raise StorageError(f"writes of {key} kept conflicting at {self.endpoint}")

    def put_file(self, key: str, src: BinaryIO) -> bool:
        size = remaining(src)
        if size is not None and size <= MULTIPART_THRESHOLD:
            return self.put(key, src.read())
        if self.has(key):
            return False
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=PART_SIZE,
            max_concurrency=4,
        )
        with self._translated(key, "write"):
            self._client.upload_fileobj(src, self.bucket, self.object_key(key), Config=config)
        return True

    def replace(self, key: str, data: bytes) -> None:
        with self._translated(key, "write"):
            self._client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)

    def delete(self, key: str) -> None:
        with self._translated(key, "delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def touch(self, key: str) -> None:
        # S3 has no utime: copying an object onto itself with new metadata is the
        # documented way to refresh LastModified. (Single copy limit: 5 GiB.)
        name = self.object_key(key)
        with self._translated(key, "touch"):
            self._client.copy_object(
                Bucket=self.bucket,
                Key=name,
                CopySource={"Bucket": self.bucket, "Key": name},
                MetadataDirective="REPLACE",
                Metadata={"touched": f"{time.time():.3f}"},
            )

    # reads

    def get(self, key: str) -> bytes:
        with self._translated(key, "read"):
            resp = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            return bytes(resp["Body"].read())

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        if length == 0:
            self.size(key)  # still raise ObjectNotFound for a missing key
            return b""
        name = self.object_key(key)
        try:
            with self._translated(key, "read"):
                resp = self._client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes={start}-{start + length - 1}"
                )
                return bytes(resp["Body"].read())
        except RangeNotSatisfiable:  # start past the end of an existing object
            return b""

    def size(self, key: str) -> int:
        with self._translated(key, "stat"):
            resp = self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            return int(resp["ContentLength"])

    def has(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ObjectNotFound:
            return False

    def has_many(self, keys: Iterable[str]) -> set[str]:
        """List a few pages, then HEAD what the listing did not reach.

        Measured on SeaweedFS, 1000 keys: 16 concurrent HEADs take ~0.9 s, one listing
        page (1000 names) ~0.05 s. A listing's cost grows with the bucket, HEADs' with
        the question, so list at most len(keys)/64 + 1 pages: a small store is answered
        by its listing, a huge one by HEADs. Names list in key order (the fan-out keeps
        it), so every wanted key up to the last listed name is already settled.
        """
        wanted = sorted({check_key(k) for k in keys})
        if not wanted:
            return set()
        found, last = self._list_until(wanted, max_pages=1 + len(wanted) // 64)
        rest = [k for k in wanted if last is not None and k > last]
        if len(rest) <= 1:
            return found | {k for k in rest if self.has(k)}
        with ThreadPoolExecutor(min(HEAD_THREADS, len(rest))) as pool:
            present = pool.map(self.has, rest)
            return found | {k for k, ok in zip(rest, present, strict=True) if ok}

    def _list_until(self, wanted: list[str], max_pages: int) -> tuple[set[str], str | None]:
        """Wanted keys seen in up to `max_pages` listing pages, and the last key the
        listing reached ("" for none; None when it listed everything)."""
        want = set(wanted)
        found: set[str] = set()
        last = ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix,
            StartAfter=self._before(wanted[0]),
            PaginationConfig={"PageSize": self.list_page_size},
        )
        with self._translated(None, "list"):
            for n, page in enumerate(pages, 1):
                for obj in page.get("Contents", []):
                    key = self._key_of(obj["Key"])
                    if key is not None:
                        last = key
                        if key in want:
                            found.add(key)
                if not page.get("IsTruncated"):
                    return found, None
                if n >= max_pages or last >= wanted[-1]:
                    return found, last
        return found, None

    def _before(self, key: str) -> str:
        """A name sorting just before `key`'s (StartAfter is exclusive)."""
        name = self.object_key(key)  # ends in a hex digit, so "x0" -> "x/~"
        return name[:-1] + chr(ord(name[-1]) - 1) + "~"

    def _key_of(self, name: str) -> str | None:
        return key_from_name(name[len(self.prefix) :])

    def list(self) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translated(None, "list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    key = self._key_of(obj["Key"])
                    if key is not None:
                        yield ObjectInfo(key, int(obj["Size"]), obj["LastModified"].timestamp())

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    @contextmanager
    def _translated(self, key: str | None, action: str) -> Iterator[None]:
        """botocore / transfer errors -> the modelvc error tree, naming the endpoint."""
        import botocore.exceptions as bce
        from boto3.exceptions import Boto3Error

        where = f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"
        try:
            yield
        except bce.ClientError as exc:
            raise client_error(exc, key, action, where) from exc
        except (bce.BotoCoreError, Boto3Error, OSError) as exc:
            raise StorageError(
                f"cannot {action} {key or 'objects'} in {where}: {exc}",
                hint="is the S3 endpoint up and reachable?",
            ) from exc
