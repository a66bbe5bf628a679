"""Memory: MemoryBackend (a dict behind a lock) and MemoryStore (packed on it), with
the same semantics as the disk and S3 stores: the same packing layer runs on all three."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ..errors import ObjectNotFound, UsageError
from .backend import Capabilities, Entry
from .packed import PackedStore


class MemoryBackend:
    caps = Capabilities(local=True, deferred_sync=False)

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def where(self) -> str:
        return "memory"

    def put(self, name: str, data: bytes, *, exclusive: bool = True,
            durable: bool = False) -> bool:
        data = bytes(data)  # a private copy: the caller may reuse a bytearray
        with self._lock:
            if exclusive and name in self._files:
                return False
            self._files[name] = (data, time.time())
            return True

    def put_file(self, name: str, src: BinaryIO) -> bool:
        if name in self._files:  # skip reading a large stream for nothing
            return False
        return self.put(name, src.read())

    def _entry(self, name: str) -> tuple[bytes, float]:
        try:
            return self._files[name]
        except KeyError:
            raise ObjectNotFound(f"{name} is missing from memory") from None

    def get(self, name: str) -> bytes:
        return self._entry(name)[0]

    def get_range(self, name: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        return self._entry(name)[0][start : start + length]

    def stat(self, name: str) -> Entry:
        data, mtime = self._entry(name)
        return Entry(name, len(data), mtime)

    def present(self, names: list[str]) -> set[str]:
        return {n for n in names if n in self._files}

    def list(self, prefix: str) -> Iterator[Entry]:
        with self._lock:  # a snapshot, so callers may delete while iterating
            items = [(n, v) for n, v in self._files.items() if n.startswith(prefix)]
        for name, (data, mtime) in items:
            yield Entry(name, len(data), mtime)

    def delete(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._files.pop(name, None)

    def touch(self, name: str) -> None:
        with self._lock:
            data, _ = self._entry(name)
            self._files[name] = (data, time.time())

    def sync(self, names: Iterable[str]) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryStore(PackedStore):
    def __init__(self) -> None:
        super().__init__(MemoryBackend())

    def __repr__(self) -> str:
        return "MemoryStore()"
