"""The object-store protocol: opaque bytes under content ids.

The store knows nothing of tensors. Keys are lowercase hex strings (the BLAKE3 id of
the *decoded* content, so the store cannot verify them; the codec does on read).
Objects are write-once: `put` of an existing key is a no-op that returns False,
`replace` is the one way to rewrite an object (used only by `delete` re-basing,
under the registry's gc lock). Every put is atomic: a reader sees the whole object
or nothing, and a crash mid-put leaves at most an unreferenced temp file.

Batch writes: a store may also offer `put_many(items: list[tuple[str, bytes]]) ->
list[bool]`, one flag per item with put's meaning (a key listed twice is stored once:
its later entries answer False). Like put, it is durable when it returns. S3Store packs
small objects into one S3 object per batch (see packs); LocalStore and MemoryStore
put each item. It is not part of the ObjectStore protocol, so wrappers and third-party
stores need not implement it: callers go through the `put_many` helper below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from ..errors import UsageError

_KEY = re.compile(r"^[0-9a-f]{8,128}$")


def is_valid_key(key: str) -> bool:
    """True for a well-formed object id (used when listing, to skip stray names)."""
    return _KEY.match(key) is not None


def check_key(key: str) -> str:
    """Refuse keys that could escape a folder or a bucket prefix."""
    if not _KEY.match(key):
        raise UsageError(f"invalid object id {key!r}: expected lowercase hex")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch; gc's grace period compares against it


@runtime_checkable
class ObjectStore(Protocol):
    """Five verbs plus streaming. Implementations: LocalStore, MemoryStore, S3Store."""

    def put(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` atomically; False (and no write) if it exists."""
        ...

    def put_file(self, key: str, src: BinaryIO) -> bool:
        """Stream a file-like object into the store; same semantics as put."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Atomically rewrite an existing object (same decoded content, new encoding)."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; raises ObjectNotFound."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        """`length` bytes from `start` (fewer at the end); raises ObjectNotFound."""
        ...

    def size(self, key: str) -> int:
        """Stored size in bytes; raises ObjectNotFound."""
        ...

    def has(self, key: str) -> bool: ...

    def has_many(self, keys: Iterable[str]) -> set[str]:
        """The subset of `keys` present in the store."""
        ...

    def list(self) -> Iterator[ObjectInfo]:
        """Every object, in no particular order (temp files excluded)."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""
        ...

    def touch(self, key: str) -> None:
        """Refresh the object's mtime (gc re-add protection); missing -> ObjectNotFound."""
        ...

    def close(self) -> None: ...


def flush(store: ObjectStore, keys: Iterable[str]) -> None:
    """Make just-written objects durable where the store defers it (LocalStore with
    fsync=False); a no-op for stores whose puts are durable when they return."""
    fn = getattr(store, "flush", None)
    if fn is not None:
        fn(keys)


def put_many(store: ObjectStore, items: list[tuple[str, bytes]]) -> list[bool]:
    """`store.put_many(items)` where the store has it, else one `put` per item."""
    fn = getattr(store, "put_many", None)
    if fn is not None:
        return list(fn(items))
    return [store.put(k, data) for k, data in items]


def get_tail(store: ObjectStore, key: str, n: int) -> tuple[int, bytes]:
    """(size, the last n bytes or all of them): `store.get_tail` where the store reads
    both at once (LocalStore: one open), else `size` then `get_range`."""
    fn = getattr(store, "get_tail", None)
    if fn is not None:
        size, data = fn(key, n)
        return int(size), bytes(data)
    size = store.size(key)
    start = max(0, size - n)
    return size, bytes(store.get_range(key, start, size - start))
