"""Object stores: opaque bytes under content ids (see base.py for the protocol).

Layered as restic is: thin backends (backend.py: put, get range, stat, list, delete,
declared capabilities) for a local folder (local.py), S3 (s3.py) and memory (memory.py),
under one packing layer (packed.py, the pack format in packs.py) that makes each of
them an ObjectStore with the same packs, tombstones and consistency model.

`import modelvc.objects` does not import boto3: S3Store loads it on first use, and
MemoryStore (tests, `memory://`) loads when first asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import UsageError
from .base import ObjectInfo, ObjectStore, check_key
from .local import LocalStore

if TYPE_CHECKING:
    from .memory import MemoryStore
    from .s3 import S3Store

__all__ = [
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectStore",
    "S3Store",
    "check_key",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    if name == "MemoryStore":
        from .memory import MemoryStore

        return MemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str, *, deferred_fsync: bool = False) -> ObjectStore:
    """Open a store from a URL.

    - ``/path`` or ``file:///path``: LocalStore (deferred_fsync: the caller batches
      durability with ``objects.base.flush``)
    - ``memory://``: a fresh MemoryStore
    - ``s3://bucket/prefix?endpoint=http://host:8333&region=us-east-1``: S3Store;
      credentials from ``access_key`` / ``secret_key`` in the query, else boto3's usual
      chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles).
    """
    if "://" not in url:
        return LocalStore(Path(url), fsync=not deferred_fsync)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file URL with a host is not supported: {url!r}")
        return LocalStore(Path(unquote(parts.path)), fsync=not deferred_fsync)
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "s3":
        return _open_s3(parts.netloc, parts.path, parse_qs(parts.query), url)
    raise UsageError(
        f"unknown store URL {url!r}: use a path, file://, memory:// or s3://bucket/prefix"
    )


def _open_s3(bucket: str, path: str, query: dict[str, list[str]], url: str) -> ObjectStore:
    from .s3 import S3Store

    def arg(name: str, env: str | None = None) -> str | None:
        values = query.get(name)
        if values:
            return values[-1]
        return os.environ.get(env) if env else None

    known = {"endpoint", "region", "access_key", "secret_key"}
    unknown = set(query) - known
    if unknown:
        raise UsageError(f"unknown S3 URL option(s) {sorted(unknown)} in {url!r}")
    if not bucket:
        raise UsageError(f"S3 URL without a bucket: {url!r}")
    return S3Store(
        bucket,
        prefix=unquote(path).strip("/"),
        endpoint_url=arg("endpoint", "AWS_ENDPOINT_URL_S3") or arg("endpoint", "AWS_ENDPOINT_URL"),
        region=arg("region", "AWS_REGION") or arg("region", "AWS_DEFAULT_REGION"),
        access_key=arg("access_key", "AWS_ACCESS_KEY_ID"),
        secret_key=arg("secret_key", "AWS_SECRET_ACCESS_KEY"),
    )
