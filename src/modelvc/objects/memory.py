"""MemoryStore: a dict behind a lock, with the same semantics as the other stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ..errors import ObjectNotFound, UsageError
from .base import ObjectInfo, check_key


class MemoryStore:
    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._objects)} objects)"

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        data = bytes(data)  # a private copy: the caller may reuse a bytearray
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = (data, time.time())
            return True

    def put_many(self, items: list[tuple[str, bytes]]) -> list[bool]:
        return [self.put(k, data) for k, data in items]

    def put_file(self, key: str, src: BinaryIO) -> bool:
        check_key(key)
        if self.has(key):  # skip reading a large stream for nothing
            return False
        return self.put(key, src.read())

    def replace(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            self._objects[key] = (bytes(data), time.time())

    def get(self, key: str) -> bytes:
        return self._entry(key)[0]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        return self._entry(key)[0][start : start + length]

    def size(self, key: str) -> int:
        return len(self._entry(key)[0])

    def has(self, key: str) -> bool:
        check_key(key)
        return key in self._objects

    def has_many(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if self.has(key)}

    def list(self) -> Iterator[ObjectInfo]:
        with self._lock:  # a snapshot, so callers may delete while iterating
            items = list(self._objects.items())
        for key, (data, mtime) in items:
            yield ObjectInfo(key, len(data), mtime)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def touch(self, key: str) -> None:
        check_key(key)
        with self._lock:
            if key not in self._objects:
                raise ObjectNotFound(f"object {key} is missing from memory")
            self._objects[key] = (self._objects[key][0], time.time())

    def close(self) -> None:
        pass

    def _entry(self, key: str) -> tuple[bytes, float]:
        check_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFound(f"object {key} is missing from memory") from None
