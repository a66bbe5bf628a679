"""PendingStore: hold small new objects and write them with one `put_many`.

A commit writes many small objects; on S3 one request each is most of its cost. This
wrapper keeps objects up to `max_item` bytes in memory (up to `max_bytes` in all, then
writes them early) and serves reads of them, so the writer can read back what it just
"stored" (headers for delta chains, sizes for rows). Nothing is durable until `flush`,
which callers run before anything refers to the objects (invariant 1).

`put` of a held object answers True: the caller presumes it new. `flush` reports the
keys the store already had; their stored encoding may differ from the caller's, so the
caller re-reads their rows (FileStorer does).

With `early` set (a local disk: LocalStore.pack_early), once that many bytes are held
they are handed to a writer thread while the caller keeps encoding: a commit's packs
are written (copied into the page cache, hashed, fsynced) beside the encode instead of
all after its last block, on one core. Nothing changes for durability: `flush` waits
for the writer before it returns, and a background write that failed puts its objects
back, so `flush` writes them itself and raises what the store raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from .base import ObjectInfo, ObjectStore, check_key, get_tail, put_many


class PendingStore:
    def __init__(self, base: ObjectStore, *, max_item: int = 1 << 20,
                 max_bytes: int = 32 << 20, early: int | None = None,
                 on_skip: Callable[[str], None] | None = None) -> None:
        self.base = base
        self.max_item = max_item
        self.max_bytes = max_bytes
        self.early = early  # held bytes that start a background write (None: never)
        self.on_skip = on_skip or (lambda key: None)
        self._items: dict[str, bytes] = {}
        self._bytes = 0
        self._writing: dict[str, bytes] = {}  # with the writer thread, still served
        self._writer: threading.Thread | None = None
        self.written: set[str] = set()  # by this wrapper's flushes
        self.skipped: set[str] = set()  # the store had them already
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)  # notified when a writer ends

    def __repr__(self) -> str:
        return f"PendingStore({self.base!r}, {len(self._items)} held)"

    def holds(self, key: str) -> bool:
        """Held, or already flushed by this wrapper (either way: not new again)."""
        with self._lock:
            return (key in self._items or key in self._writing or key in self.written
                    or key in self.skipped)

    def flush(self) -> set[str]:
        """Write the held objects (after the writer thread's, if one runs); every key
        found already stored so far."""
        with self._lock:
            while self._writer is not None:
                self._idle.wait()
            items = list(self._items.items())
            if items:
                for (key, _), new in zip(items, put_many(self.base, items), strict=True):
                    if new:
                        self.written.add(key)
                    else:
                        self.skipped.add(key)
                        self.on_skip(key)
            self._items.clear()
            self._bytes = 0
            return set(self.skipped)

    # writes

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        if len(data) > self.max_item:
            return self.base.put(key, data)
        with self._lock:
            if self.holds(key):
                return False
            self._items[key] = bytes(data)
            self._bytes += len(data)
            if self._bytes >= self.max_bytes:  # bounds memory on a big commit
                self.flush()
            elif self.early is not None and self._bytes >= self.early and self._writer is None:
                self._hand_over()
            return True

    def _hand_over(self) -> None:
        """Give the held objects to a writer thread (the lock is held)."""
        self._writing, self._items, self._bytes = self._items, {}, 0
        self._writer = threading.Thread(target=self._write, args=(list(self._writing.items()),),
                                        name="modelvc-pack-writer", daemon=True)
        self._writer.start()

    def _write(self, items: list[tuple[str, bytes]]) -> None:
        """The writer thread: store ITEMS; on any failure put them back for flush."""
        try:
            results: list[bool] | None = put_many(self.base, items)
        except BaseException:  # flush writes them again and raises what the store raises
            results = None
        skipped = []
        with self._lock:
            if results is None:
                for key, data in items:
                    if key not in self._items:
                        self._items[key] = data
                        self._bytes += len(data)
            else:
                for (key, _), new in zip(items, results, strict=True):
                    (self.written if new else self.skipped).add(key)
                    if not new:
                        skipped.append(key)
            self._writing = {}
            self._writer = None
            self._idle.notify_all()
        for key in skipped:  # outside the lock: the callback takes its owner's
            self.on_skip(key)

    def put_file(self, key: str, src: BinaryIO) -> bool:
        return self.base.put_file(key, src)

    def replace(self, key: str, data: bytes) -> None:
        self.base.replace(key, data)

    def delete(self, key: str) -> None:
        with self._lock:
            while key in self._writing:
                self._idle.wait()
            data = self._items.pop(key, None)
            self._bytes -= len(data or b"")
        self.base.delete(key)

    def touch(self, key: str) -> None:
        with self._lock:
            if key in self._items or key in self._writing:
                return
        self.base.touch(key)

    # reads: held objects first

    def _held(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(check_key(key))
            return self._writing.get(key) if data is None else data

    def get(self, key: str) -> bytes:
        data = self._held(key)
        return self.base.get(key) if data is None else data

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        data = self._held(key)
        if data is None or start < 0 or length < 0:
            return self.base.get_range(key, start, length)
        return data[start : start + length]

    def read_into(self, key: str, start: int, buf: memoryview) -> int:
        """As LocalStore.read_into, whatever the base store."""
        data = self._held(key)
        if data is None:
            fn = getattr(self.base, "read_into", None)
            if fn is not None:
                return int(fn(key, start, buf))
            data = bytes(self.base.get_range(key, start, len(buf)))
            start = 0
        chunk = memoryview(data)[start : start + len(buf)]
        buf[: len(chunk)] = chunk
        return len(chunk)

    def get_tail(self, key: str, n: int) -> tuple[int, bytes]:
        data = self._held(key)
        if data is None:
            return get_tail(self.base, key, n)
        return len(data), data[max(0, len(data) - n) :]

    def size(self, key: str) -> int:
        data = self._held(key)
        return self.base.size(key) if data is None else len(data)

    def has(self, key: str) -> bool:
        return self._held(key) is not None or self.base.has(key)

    def has_many(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        with self._lock:
            mine = {k for k in keys if k in self._items or k in self._writing}
        return mine | self.base.has_many(k for k in keys if k not in mine)

    def list(self) -> Iterator[ObjectInfo]:
        return self.base.list()

    def close(self) -> None:
        pass
