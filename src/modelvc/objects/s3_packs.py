"""Packs: many small objects in one S3 object, so a version is not one request each.

    <prefix>packs/<id>        payloads, back to back | index (JSON) | u64 index length | MAGIC
    <prefix>packs/<id>.dead   JSON list of the members gc deleted (absent: none)

The index is canonical JSON `{"data": blake3(payloads), "objects": {key: [offset, length]}}`
and the pack id is the BLAKE3 of the index bytes, so equal ids mean equal bytes: two
writers of the same pack race harmlessly on a conditional put. A reader finds the index
from the end (the fixed 16-byte trailer, then the index), which is why it trails.

Reads of packed members go through `PackCache`: aligned windows of a pack's bytes
(PACK_WINDOW each), fetched once and kept in a bounded LRU. A pack never changes under
its id, so a cached window is never stale; a fine-tune's delta references (its parent's
tensors, written together) are then a request or two for the whole pack, not two or
three ranged GETs each (tail, footer, payload).

This module is the format and the in-memory structures; S3Store does the requests.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import blake3

from ..errors import CorruptObject

MAGIC = b"MVPACK01"
TRAILER = 16  # u64 big-endian index length + MAGIC
MEMBER_MAX = 1 << 20  # larger objects are stored on their own
PACK_TARGET = 32 << 20  # a pack closes once it holds this many bytes
TAIL_READ = 64 << 10  # first read of a pack's end: the trailer and, usually, the index
PACK_WINDOW = 4 << 20  # packed reads fetch aligned windows of this size
PACK_CACHE = 64 << 20  # default bound of an S3Store's cached windows
PACKS = "packs/"
_NAME = re.compile(r"^([0-9a-f]{64})(\.dead)?$")


def pack_name(rest: str) -> tuple[str, bool] | None:
    """'<id>' -> (id, False), '<id>.dead' -> (id, True), anything else None."""
    m = _NAME.match(rest)
    return (m.group(1), m.group(2) is not None) if m else None


def build(items: list[tuple[str, bytes]]) -> tuple[str, bytes, dict[str, tuple[int, int]]]:
    """(pack id, pack bytes, members) for distinct keys."""
    members: dict[str, tuple[int, int]] = {}
    hasher = blake3.blake3()
    off = 0
    for key, data in items:
        members[key] = (off, len(data))
        hasher.update(data)
        off += len(data)
    index = json.dumps({"data": hasher.hexdigest(), "objects": members},
                       sort_keys=True, separators=(",", ":")).encode()
    body = b"".join([*(d for _, d in items), index, struct.pack(">Q", len(index)), MAGIC])
    return blake3.blake3(index).hexdigest(), body, members


def index_length(tail: bytes, pack_id: str) -> int:
    """The index length from a pack's last bytes (at least TRAILER of them)."""
    if len(tail) < TRAILER or tail[-8:] != MAGIC:
        raise CorruptObject(f"pack {pack_id[:12]} has no pack trailer")
    return int(struct.unpack(">Q", tail[-TRAILER:-8])[0])


def parse_index(pack_id: str, index: bytes, size: int) -> dict[str, tuple[int, int]]:
    """The members of a pack, checked against its id and its size."""
    if blake3.blake3(index).hexdigest() != pack_id:
        raise CorruptObject(f"pack {pack_id[:12]} does not match its index")
    try:
        doc = json.loads(index)
        members = {str(k): (int(v[0]), int(v[1])) for k, v in doc["objects"].items()}
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptObject(f"pack {pack_id[:12]} has an unreadable index") from exc
    end = size - TRAILER - len(index)
    if any(o < 0 or n < 0 or o + n > end for o, n in members.values()):
        raise CorruptObject(f"pack {pack_id[:12]} lists a member outside its payload")
    return members


def groups(items: list[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    """Consecutive runs of items holding up to PACK_TARGET bytes each."""
    run: list[tuple[str, bytes]] = []
    size = 0
    for item in items:
        if run and size + len(item[1]) > PACK_TARGET:
            yield run
            run, size = [], 0
        run.append(item)
        size += len(item[1])
    if run:
        yield run


@dataclass
class Pack:
    id: str
    size: int
    mtime: float
    members: dict[str, tuple[int, int]]
    dead: set[str] = field(default_factory=set)
    dead_etag: str | None = None  # of the .dead object last read (None: no .dead)

    def live(self) -> bool:
        return len(self.dead) < len(self.members)


@dataclass(frozen=True)
class Location:
    pack: str
    offset: int
    length: int
    mtime: float
    pack_size: int = 0  # of the whole pack (window reads stop at its end)


class PackMap:
    """Which pack holds each key (live members only). Thread-safe."""

    def __init__(self) -> None:
        self._packs: dict[str, Pack] = {}
        self._holders: dict[str, list[str]] = {}  # key -> packs listing it, live or dead
        self._lock = threading.Lock()

    def locate(self, key: str) -> Location | None:
        with self._lock:
            for pid in self._holders.get(key, ()):
                p = self._packs[pid]
                if key not in p.dead:
                    off, n = p.members[key]
                    return Location(pid, off, n, p.mtime, p.size)
        return None

    def holding(self, key: str) -> list[Pack]:
        """Packs where `key` is a live member."""
        with self._lock:
            return [self._packs[pid] for pid in self._holders.get(key, ())
                    if key not in self._packs[pid].dead]

    def get(self, pack_id: str) -> Pack | None:
        with self._lock:
            return self._packs.get(pack_id)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._packs)

    def add(self, pack: Pack) -> None:
        with self._lock:
            if pack.id in self._packs:
                self._drop(pack.id)
            self._packs[pack.id] = pack
            for key in pack.members:
                self._holders.setdefault(key, []).append(pack.id)

    def drop(self, pack_id: str) -> None:
        with self._lock:
            self._drop(pack_id)

    def _drop(self, pack_id: str) -> None:
        pack = self._packs.pop(pack_id, None)
        if pack is None:
            return
        for key in pack.members:
            rest = [p for p in self._holders.get(key, ()) if p != pack_id]
            if rest:
                self._holders[key] = rest
            else:
                self._holders.pop(key, None)

    def update(self, pack_id: str, *, mtime: float | None = None, dead: set[str] | None = None,
               dead_etag: str | None = None) -> None:
        with self._lock:
            p = self._packs.get(pack_id)
            if p is None:
                return
            if mtime is not None:
                p.mtime = mtime
            if dead is not None:
                p.dead = dead & set(p.members)
                p.dead_etag = dead_etag

    def live_items(self) -> list[tuple[str, Location]]:
        """Every live packed key once (the newest pack holding it)."""
        out: dict[str, Location] = {}
        with self._lock:
            for p in self._packs.values():
                for key, (off, n) in p.members.items():
                    if key not in p.dead and (key not in out or out[key].mtime < p.mtime):
                        out[key] = Location(p.id, off, n, p.mtime, p.size)
        return list(out.items())


class PackCache:
    """Aligned windows of pack bytes in a bounded LRU. Thread-safe; concurrent readers
    of one window wait for a single fetch. `limit` 0 disables caching (every read still
    fetches whole windows, so keep it above PACK_WINDOW)."""

    def __init__(self, limit: int = PACK_CACHE, window: int = PACK_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._windows: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._loading: dict[tuple[str, int], threading.Event] = {}
        self._lock = threading.Lock()

    def read(self, pack_id: str, pack_size: int, start: int, length: int,
             fetch: Callable[[int, int], bytes]) -> bytes:
        """`length` bytes at `start` of the pack; `fetch(start, length)` reads the pack."""
        end = min(start + length, pack_size)
        if start >= end:
            return b""
        w = self.window
        parts = []
        for i in range(start // w, (end - 1) // w + 1):
            data = self._get(pack_id, pack_size, i, fetch)
            parts.append(data[max(start - i * w, 0) : end - i * w])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _get(self, pack_id: str, pack_size: int, i: int,
             fetch: Callable[[int, int], bytes]) -> bytes:
        k = (pack_id, i)
        while True:
            with self._lock:
                data = self._windows.get(k)
                if data is not None:
                    self._windows.move_to_end(k)
                    return data
                loading = self._loading.get(k)
                if loading is None:
                    loading = self._loading[k] = threading.Event()
                    break
            loading.wait()  # another thread fetches it; a failed fetch: try ourselves
        try:
            lo = i * self.window
            want = min(lo + self.window, pack_size) - lo
            data = fetch(lo, want)
            if len(data) != want:
                raise CorruptObject(f"pack {pack_id[:12]} is shorter than listed "
                                    f"({lo + len(data)} < {lo + want} bytes)")
            with self._lock:
                if len(data) <= self.limit:
                    self._windows[k] = data
                    self._bytes += len(data)
                    while self._bytes > self.limit:
                        _, old = self._windows.popitem(last=False)
                        self._bytes -= len(old)
            return data
        finally:
            with self._lock:
                self._loading.pop(k, None)
            loading.set()

    def drop(self, pack_id: str) -> None:
        with self._lock:
            for k in [k for k in self._windows if k[0] == pack_id]:
                self._bytes -= len(self._windows.pop(k))

    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes
