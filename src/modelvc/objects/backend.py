"""Backends: where bytes live, and nothing else (the restic split).

A backend stores named files: object files `ab/cdef0123...` and pack files
`packs/<id>.<nonce>[.dead.<uuid>]`. It knows nothing of packs, tombstones or content ids:
`PackedStore` (packed.py) is the one layer above every backend that turns names into an
ObjectStore, so the local disk and S3 pack, tombstone, list and collect alike.

Verbs: put (create-only or overwrite), put_file (streamed, create-only), get / get_range,
stat, list (by prefix), delete, touch, sync. Each backend declares what it is good at in
`caps`, and the packing layer adapts to it rather than to the backend's type.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the backend's root, "/"-separated
    size: int
    mtime: float  # seconds since the epoch
    etag: str = ""  # changes when the file is rewritten ("" where the backend has none)


@dataclass(frozen=True)
class Capabilities:
    # A request is a system call on a page-cached file, not a network round trip: the
    # packing layer then reads pack members directly instead of through a window cache,
    # and answers `has_many` with a stat per name.
    local: bool
    # put() returns before its bytes are durable; sync(names) makes them so (batched:
    # a commit fsyncs once at the end, not per object).
    deferred_sync: bool


class Backend(Protocol):
    caps: Capabilities

    def where(self) -> str:
        """Where the files are, for messages ("/srv/reg/objects", "s3://b/p at http://...")."""
        ...

    def put(self, name: str, data: bytes, *, exclusive: bool = True,
            durable: bool = False) -> bool:
        """Write `name` atomically (a reader sees all or nothing). exclusive: False and no
        write when it exists. durable: synced before returning, whatever `caps` says."""
        ...

    def put_file(self, name: str, src: BinaryIO) -> bool:
        """Stream a file into `name` (create-only, atomic)."""
        ...

    def get(self, name: str) -> bytes:
        """The whole file; ObjectNotFound when missing."""
        ...

    def get_range(self, name: str, start: int, length: int) -> bytes | memoryview:
        """Up to `length` bytes from `start` (fewer or none past the end)."""
        ...

    def stat(self, name: str) -> Entry:
        """Size and mtime; ObjectNotFound when missing."""
        ...

    def present(self, names: list[str]) -> set[str]:
        """The subset of `names` (sorted object names) that exist."""
        ...

    def list(self, prefix: str) -> Iterator[Entry]:
        """Files whose name starts with `prefix` ("" for all), temp files excluded."""
        ...

    def delete(self, names: Iterable[str]) -> None:
        """Remove files; missing ones are fine."""
        ...

    def touch(self, name: str) -> None:
        """Set the mtime to now (gc's grace period); ObjectNotFound when missing."""
        ...

    def sync(self, names: Iterable[str]) -> None:
        """Make files written with deferred sync durable (a no-op where puts are)."""
        ...

    def close(self) -> None: ...
