"""Packs: many small objects in one S3 object, so a version is not one request each.

    <prefix>packs/<id>.<nonce>               payloads | index (JSON) | u64 index length | MAGIC
    <prefix>packs/<id>.<nonce>.dead.<uuid>   a tombstone: JSON list of members deleted

The index is canonical JSON `{"data": blake3(payloads), "objects": {key: [offset, length]}}`
and the pack id is the BLAKE3 of the index bytes (checked on read). A reader finds the
index from the end (the fixed 16-byte trailer, then the index), which is why it trails.

Every pack write gets a fresh random nonce, so a pack's *name* is never written twice:
a tombstone names the one pack object it applies to, and nothing written to that name
later can exist. Tombstones are write-once objects with unique names; a pack's dead
members are the union of its tombstones. So concurrent collectors never lose each
other's deletions (no read-merge-write), merging (write the union, then delete the
parts) is idempotent, and a tombstone left behind by a crash or a racing collector
after its pack was deleted is inert (and removed later). A pack goes when all its
members are dead: the pack first, then its tombstones. (Two writers of one batch
store two packs of equal content; a key held by several packs is read from any live
one.) Stores written before nonces (`packs/<id>`, a mutable `packs/<id>.dead`) are
still read: the old `.dead` is one more tombstone, re-read when its ETag changes.

Reads of packed members go through `PackCache`: aligned windows of a pack's bytes
(PACK_WINDOW each), fetched once and kept in a bounded LRU. A pack never changes under
its name, so a cached window is never stale; a fine-tune's delta references (its
parent's tensors, written together) are then a request or two for the whole pack, not
two or three ranged GETs each (tail, footer, payload).

This module is the format and the in-memory structures; S3Store does the requests.
"""

from __future__ import annotations

import json
import re
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
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
TOMBSTONE_MERGE = 32  # a pack's tombstones beyond this many are merged into one
_NAME = re.compile(r"^(([0-9a-f]{64})(?:\.[0-9a-f]{16})?)(\.dead(?:\.[0-9a-f]{32})?)?$")


def pack_name(rest: str) -> tuple[str, bool] | None:
    """A name under packs/ -> (the pack's name, whether it is one of its tombstones):
    '<id>.<nonce>' -> ('<id>.<nonce>', False), '<id>.<nonce>.dead.<uuid>' ->
    ('<id>.<nonce>', True); anything else None."""
    m = _NAME.match(rest)
    return (m.group(1), m.group(3) is not None) if m else None


def pack_id(name: str) -> str:
    """The content id (BLAKE3 of the index) part of a pack's name."""
    return name[:64]


def new_pack_name(pid: str) -> str:
    return f"{pid}.{secrets.token_hex(8)}"


def new_tombstone_name(pack: str) -> str:
    return f"{pack}.dead.{secrets.token_hex(16)}"


def tombstone_body(keys: Iterable[str]) -> bytes:
    return json.dumps(sorted(set(keys))).encode()


def parse_tombstone(body: bytes) -> frozenset[str] | None:
    """The keys a tombstone lists; None when it is unreadable."""
    try:
        doc = json.loads(body)
        if not isinstance(doc, list):
            return None
        return frozenset(str(k) for k in doc)
    except ValueError:
        return None


def build(items: list[tuple[str, bytes]], replaces: Iterable[str] = ()
          ) -> tuple[str, bytes, dict[str, tuple[int, int]]]:
    """(pack id, pack bytes, members) for distinct keys. `replaces`: the packs a repack
    copied these members from (repack.py; absent from every other pack's index)."""
    pid, parts, members = build_parts(items, replaces)
    return pid, b"".join(parts), members


def build_parts(items: list[tuple[str, bytes]], replaces: Iterable[str] = ()
                ) -> tuple[str, list[bytes], dict[str, tuple[int, int]]]:
    """As `build`, the pack's bytes as the pieces to write in order (a local write
    takes them as they are: no copy of a commit's whole new bytes to join them)."""
    members: dict[str, tuple[int, int]] = {}
    hasher = blake3.blake3()
    off = 0
    for key, data in items:
        members[key] = (off, len(data))
        hasher.update(data)
        off += len(data)
    doc: dict[str, object] = {"data": hasher.hexdigest(), "objects": members}
    if replaces:
        doc["replaces"] = sorted(replaces)
    index = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    parts = [*(d for _, d in items), index + struct.pack(">Q", len(index)) + MAGIC]
    return blake3.blake3(index).hexdigest(), parts, members


def index_length(tail: bytes, pid: str) -> int:
    """The index length from a pack's last bytes (at least TRAILER of them)."""
    if len(tail) < TRAILER or tail[-8:] != MAGIC:
        raise CorruptObject(f"pack {pid[:12]} has no pack trailer")
    return int(struct.unpack(">Q", tail[-TRAILER:-8])[0])


def parse_index(pid: str, index: bytes, size: int
                ) -> tuple[dict[str, tuple[int, int]], frozenset[str]]:
    """The members of a pack, checked against its id and its size, and the packs it
    replaces (repack.py)."""
    if blake3.blake3(index).hexdigest() != pid:
        raise CorruptObject(f"pack {pid[:12]} does not match its index")
    try:
        doc = json.loads(index)
        members = {str(k): (int(v[0]), int(v[1])) for k, v in doc["objects"].items()}
        replaces = frozenset(str(r) for r in doc.get("replaces", ()))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptObject(f"pack {pid[:12]} has an unreadable index") from exc
    end = size - TRAILER - len(index)
    if any(o < 0 or n < 0 or o + n > end for o, n in members.values()):
        raise CorruptObject(f"pack {pid[:12]} lists a member outside its payload")
    return members, replaces


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
    name: str  # under packs/: "<id>.<nonce>" ("<id>" in stores written before nonces)
    size: int
    mtime: float
    members: dict[str, tuple[int, int]]
    # tombstone name -> (its ETag, the keys it lists); dead = their union
    tombstones: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    # Packs a repack copied this one's members from: a member found here may be
    # dropped from those (repack.py: reliance only ever points to a later pack).
    replaces: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return pack_id(self.name)

    def all_dead(self) -> bool:
        return len(self.dead) >= len(self.members)


@dataclass(frozen=True)
class Location:
    pack: str  # the pack's name
    offset: int
    length: int
    mtime: float
    pack_size: int = 0  # of the whole pack (window reads stop at its end)


class PackMap:
    """Which pack holds each key (live members only). Thread-safe."""

    def __init__(self) -> None:
        self._packs: dict[str, Pack] = {}
        self._holders: dict[str, list[str]] = {}  # key -> packs listing it, live or dead
        self._added: dict[str, float] = {}  # tombstones written here -> monotonic time
        self._lock = threading.Lock()

    def locate(self, key: str) -> Location | None:
        with self._lock:
            for name in self._holders.get(key, ()):
                p = self._packs[name]
                if key not in p.dead:
                    off, n = p.members[key]
                    return Location(name, off, n, p.mtime, p.size)
        return None

    def holding(self, key: str) -> list[Pack]:
        """Packs where `key` is a live member."""
        with self._lock:
            return [self._packs[name] for name in self._holders.get(key, ())
                    if key not in self._packs[name].dead]

    def get(self, name: str) -> Pack | None:
        with self._lock:
            return self._packs.get(name)

    def names(self) -> set[str]:
        with self._lock:
            return set(self._packs)

    def packs(self) -> list[Pack]:
        with self._lock:
            return list(self._packs.values())

    def all_dead(self) -> list[Pack]:
        with self._lock:
            return [p for p in self._packs.values() if p.all_dead()]

    def add(self, pack: Pack) -> None:
        with self._lock:
            if pack.name in self._packs:
                self._drop(pack.name)
            self._packs[pack.name] = pack
            for key in pack.members:
                self._holders.setdefault(key, []).append(pack.name)

    def drop(self, name: str) -> None:
        with self._lock:
            self._drop(name)

    def _drop(self, name: str) -> None:
        pack = self._packs.pop(name, None)
        if pack is None:
            return
        for t in pack.tombstones:
            self._added.pop(t, None)
        for key in pack.members:
            rest = [p for p in self._holders.get(key, ()) if p != name]
            if rest:
                self._holders[key] = rest
            else:
                self._holders.pop(key, None)

    def update(self, name: str, *, mtime: float) -> None:
        with self._lock:
            p = self._packs.get(name)
            if p is not None:
                p.mtime = mtime

    def tombstones(self, name: str) -> dict[str, tuple[str, frozenset[str]]]:
        with self._lock:
            p = self._packs.get(name)
            return dict(p.tombstones) if p is not None else {}

    def set_tombstones(self, name: str, tombs: dict[str, tuple[str, frozenset[str]]],
                       *, since: float) -> None:
        """The pack's tombstones as a listing that started at `since` (monotonic) saw
        them, keeping the ones this process wrote after that."""
        with self._lock:
            p = self._packs.get(name)
            if p is None:
                return
            kept = {t: v for t, v in p.tombstones.items()
                    if t not in tombs and self._added.get(t, -1.0) >= since}
            for t in p.tombstones:
                if t not in kept:
                    self._added.pop(t, None)
            p.tombstones = {**tombs, **kept}
            p.dead = set().union(*(k for _, k in p.tombstones.values())) & set(p.members)

    def add_tombstone(self, name: str, tomb: str, etag: str, keys: frozenset[str],
                      replaces: Iterable[str] = ()) -> Pack | None:
        """Record a tombstone this process wrote (one that merged `replaces`); the
        pack, or None when it is not known."""
        with self._lock:
            p = self._packs.get(name)
            if p is None:
                return None
            for t in replaces:
                p.tombstones.pop(t, None)
                self._added.pop(t, None)
            p.tombstones[tomb] = (etag, keys)
            self._added[tomb] = time.monotonic()
            p.dead |= keys & set(p.members)
            return p

    def live_items(self) -> list[tuple[str, Location]]:
        """Every live packed key once (the newest pack holding it)."""
        out: dict[str, Location] = {}
        with self._lock:
            for p in self._packs.values():
                for key, (off, n) in p.members.items():
                    if key not in p.dead and (key not in out or out[key].mtime < p.mtime):
                        out[key] = Location(p.name, off, n, p.mtime, p.size)
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

    def read(self, pack: str, pack_size: int, start: int, length: int,
             fetch: Callable[[int, int], bytes]) -> bytes:
        """`length` bytes at `start` of the pack; `fetch(start, length)` reads the pack."""
        end = min(start + length, pack_size)
        if start >= end:
            return b""
        w = self.window
        parts = []
        for i in range(start // w, (end - 1) // w + 1):
            data = self._get(pack, pack_size, i, fetch)
            parts.append(data[max(start - i * w, 0) : end - i * w])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _get(self, pack: str, pack_size: int, i: int,
             fetch: Callable[[int, int], bytes]) -> bytes:
        k = (pack, i)
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
                raise CorruptObject(f"pack {pack[:12]} is shorter than listed "
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

    def drop(self, pack: str) -> None:
        with self._lock:
            for k in [k for k in self._windows if k[0] == pack]:
                self._bytes -= len(self._windows.pop(k))

    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes
