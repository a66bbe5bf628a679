"""BlockCache: decoded tensor blocks by (object id, block, span), least recently used out
first."""

from __future__ import annotations

import threading
from collections import OrderedDict


class BlockCache:
    """Decoded tensor blocks by (object id, block, span), least recently used out first.

    Objects are immutable, so entries never go stale. A training loop that commits
    checkpoint after checkpoint finds the parent's blocks here (they were cached when
    the parent was committed) instead of decoding its delta chain again.

    `span` is the bytes per block of the layout the block was cut in (block elements x
    the dtype's width): an id names decoded bytes whatever their encoding, so one
    process can meet one id in two layouts (it encoded the bytes as I32 while another
    writer stored them as F64 first, and the store keeps that one), and block i of
    each is other bytes. Layouts with the same span cut the same bytes: they share."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[tuple[str, int, int], bytes | memoryview] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, oid: str, i: int, span: int) -> bytes | memoryview | None:
        key = (oid, i, span)
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, oid: str, i: int, span: int, data: bytes | memoryview, *,
            low: bool = False) -> None:
        """Cache a block; `low` puts it first in line for eviction (kept only while
        nothing more likely to be used needs the room)."""
        n = len(data)
        if n > self.max_bytes // 4:
            return
        key = (oid, i, span)
        with self._lock:
            if key in self._d:
                return
            self._d[key] = data
            if low:
                self._d.move_to_end(key, last=False)
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
