"""Check received objects before they get their final name.

An incoming object is decoded (through its delta chain, whose links are already in the
store or arrive in the same pack) and its BLAKE3 compared with its id while it still
sits in memory or in a temp file; only then is it put into the store. So a store never
holds an object under a name its content does not match, whatever the sender sent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import blake3

from ..codec import decode_blob
from ..codec.header import MAGIC as TENSOR_MAGIC
from ..errors import CorruptObject, ObjectNotFound
from ..meta.api import ObjectRow
from ..objects.base import ObjectInfo, ObjectStore
from ..storage import ObjectIO

SMALL = 4 << 20  # a reference object up to this size is fetched whole, once
CACHE = 64 << 20  # per view: bounds memory whatever the pack holds


class Overlay:
    """A read view: pending objects (bytes or temp files) over the real store.

    Delta references read from the base store are fetched whole when small: on S3
    that is one GET instead of a HEAD, a footer GET and a GET per block."""

    def __init__(self, base: ObjectStore) -> None:
        self.base = base
        self.data: dict[str, bytes] = {}
        self.files: dict[str, Path] = {}
        self._sizes: dict[str, int] = {}
        self._cached = 0

    def _fetch(self, key: str) -> bytes | None:
        if key in self.data:
            return self.data[key]
        if key in self.files:
            return None
        if key not in self._sizes:
            self._sizes[key] = self.base.size(key)
            if self._sizes[key] <= SMALL and self._cached + self._sizes[key] <= CACHE:
                self.data[key] = self.base.get(key)
                self._cached += self._sizes[key]
                return self.data[key]
        return None

    def size(self, key: str) -> int:
        data = self._fetch(key)
        if data is not None:
            return len(data)
        if key in self.files:
            return self.files[key].stat().st_size
        return self._sizes[key]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self._fetch(key)
        if data is not None:
            return data[start : start + length]
        if key in self.files:
            with self.files[key].open("rb") as f:
                f.seek(start)
                return f.read(length)
        return bytes(self.base.get_range(key, start, length))

    def get(self, key: str) -> bytes:
        data = self._fetch(key)
        if data is not None:
            return data
        if key in self.files:
            return self.files[key].read_bytes()
        return self.base.get(key)

    def has(self, key: str) -> bool:
        return key in self.data or key in self.files or self.base.has(key)

    def has_many(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        mine = {k for k in keys if k in self.data or k in self.files}
        return mine | self.base.has_many(k for k in keys if k not in mine)

    # Writes never go through the view: the receiver puts into the base store.
    def put(self, key: str, data: bytes) -> bool:
        raise NotImplementedError

    def put_file(self, key: str, src: BinaryIO) -> bool:
        raise NotImplementedError

    def replace(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def list(self) -> Iterator[ObjectInfo]:
        return self.base.list()

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def touch(self, key: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def is_tensor(head: bytes, tail: bytes) -> bool:
    return head[:4] == TENSOR_MAGIC and tail[-4:] == TENSOR_MAGIC


def verify(view: Overlay, oid: str) -> ObjectRow:
    """Decode `oid` from the view and check its id; its row (kind tensor or blob)."""
    size = view.size(oid)
    if size < 4:
        raise CorruptObject(f"object {oid[:12]} is too short to be an object")
    head, tail = view.get_range(oid, 0, 4), view.get_range(oid, size - 4, 4)
    if is_tensor(head, tail):
        io = ObjectIO(view)
        try:
            io.chain(oid)  # also refuses a cyclic chain before decoding loops on it
            for _ in io.iter_tensor(oid, verify=True, cached=False):
                pass
        except ObjectNotFound as exc:
            raise CorruptObject(f"object {oid[:12]} is a delta whose reference did not "
                                "arrive first") from exc
        h = io.header(oid)
        return ObjectRow(oid, "tensor", h.codec, h.raw_size, size, h.ref)
    if size > 1 << 30:
        raise CorruptObject(f"object {oid[:12]} claims to be a {size}-byte blob")
    out = decode_blob(view.get(oid))
    if blake3.blake3(out).hexdigest() != oid:
        raise CorruptObject(f"object {oid[:12]} does not match its id")
    return ObjectRow(oid, "blob", "zstd", len(out), size)


def store_file(store: ObjectStore, oid: str, path: Path) -> None:
    with path.open("rb") as f:
        store.put_file(oid, f)


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
