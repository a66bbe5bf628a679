"""BlockCache: decoded tensor blocks by (object id, block), least recently used out first."""

from __future__ import annotations

import threading
from collections import OrderedDict


class BlockCache:
    """Decoded tensor blocks by (object id, block), least recently used out first.

    Objects are immutable, so entries never go stale. A training loop that commits
    checkpoint after checkpoint finds the parent's blocks here (they were cached when
    the parent was committed) instead of decoding its delta chain again."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[tuple[str, int], bytes | memoryview] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, oid: str, i: int) -> bytes | memoryview | None:
        with self._lock:
            v = self._d.get((oid, i))
            if v is not None:
                self._d.move_to_end((oid, i))
            return v

    def put(self, oid: str, i: int, data: bytes | memoryview, *, low: bool = False) -> None:
        """Cache a block; `low` puts it first in line for eviction (kept only while
        nothing more likely to be used needs the room)."""
        n = len(data)
        if n > self.max_bytes // 4:
            return
        with self._lock:
            if (oid, i) in self._d:
                return
            self._d[(oid, i)] = data
            if low:
                self._d.move_to_end((oid, i), last=False)
            self._bytes += n
            while self._bytes > self.max_bytes:
                _, old = self._d.popitem(last=False)
                self._bytes -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def drop(self, oid: str) -> None:
        with self._lock:
            for key in [k for k in self._d if k[0] == oid]:
                self._bytes -= len(self._d.pop(key))
