"""PackedStore: the one layer that turns a Backend into an ObjectStore, for every backend.

    ab/cdef0123...                 an object on its own ("loose": big objects, single puts)
    packs/<id>.<nonce>             many small objects in one file (packs.py: the format)
    packs/<id>.<nonce>.dead.<uuid> a tombstone: members of that pack deleted

`put_many` (a commit's small objects, held by ObjectIO.batched until the end) writes
objects of up to `member_max` bytes into packs: on S3 one request instead of a HEAD and a
PUT each, on a local disk one file create and one fsync instead of a file and a
directory fsync per object. Single puts and larger objects stay loose, so stores
written before packs existed (every object loose) are read as they are.

One consistency model, whatever the backend:
- Reads look a key up in the in-memory pack map first, then as a loose object, and on a
  miss refresh the map from a listing of `packs/` (one index read per new pack, one read
  per new tombstone). A "present" answer for a packed key (has, has_many, put's
  write-once check) comes from a map at most `map_ttl` old: gc in another process may
  have deleted the member since, and a writer deduplicating against it would lose it.
- A loose object shadows a packed copy: `replace` writes the key loose and then
  tombstones the packed copies; `delete` does the same. Tombstones are write-once files
  with unique names, so collectors never lose each other's deletions; a pack's many
  tombstones are merged (union written first, parts deleted after), and a pack is
  removed once all its members are dead (by the collector that sees it, or the next
  `list`). Another process sees a replace or a delete at its next refresh; until then
  it may read the old encoding (same decoded bytes), or, where that copy is the damaged
  one `verify --repair` replaced, bytes that fail their id check: ObjectIO then calls
  `refresh` and reads once more before it raises CorruptObject.
- Every pack write gets a fresh nonce, so a pack's name is never written twice and a
  tombstone can never apply to a later pack.
- gc's repack (repack.py) moves live members of sparse packs into new ones, writing
  before deleting: a read that misses in a pack its map names refreshes the map (from a
  listing, with the combined index of packindex.py) before it says "missing".

Remote backends read packed members through aligned windows kept in a bounded LRU
(`PackCache`): a version's objects, written together, cost a request per window.
Local backends read members directly (the page cache is the window cache).

The refresh of the pack map from a listing (pack indexes, combined indexes, tombstones)
is refresh.py's PackRefresh, gc's repack repack.py's Repacking: mixins of PackedStore,
read beside this file (one consistency model).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

from ..errors import CorruptObject, ObjectNotFound, StorageError, UsageError
from .backend import Backend
from .base import ObjectInfo, check_key
from .packs import (
    MEMBER_MAX,
    PACK_CACHE,
    PACKS,
    TOMBSTONE_MERGE,
    Location,
    Pack,
    PackCache,
    PackMap,
    build_parts,
    groups,
    new_pack_name,
    new_tombstone_name,
    tombstone_body,
)
from .refresh import PackRefresh
from .repack import Repacking

log = logging.getLogger(__name__)
T = TypeVar("T")


def object_name(key: str) -> str:
    return f"{key[:2]}/{key[2:]}"


def key_from_name(name: str) -> str | None:
    """'ab/cdef...' -> 'abcdef...'; None for anything that is not an object."""
    from .base import is_valid_key

    head, sep, tail = name.partition("/")
    if sep and len(head) == 2 and is_valid_key(head + tail):
        return head + tail
    return None


class PackedStore(PackRefresh, Repacking):
    # ObjectIO holds a commit's small objects for one put_many (packs) on every backend.
    batched_writes = True
    map_ttl = 10.0
    # Objects up to this size go into packs (ObjectIO holds them for put_many). A remote
    # backend keeps it small (a packed member is read through windows); a local one
    # packs larger ones too, since each loose object costs a file and folder fsync.
    member_max = MEMBER_MAX
    # Tombstones whose pack is gone are removed by list() once this old (a younger one
    # may belong to a pack created after the listing passed its name).
    stray_age = 600.0

    def __init__(self, backend: Backend, *, pack_cache: int = PACK_CACHE) -> None:
        self.backend = backend
        self._local = backend.caps.local
        self._packs = PackMap()
        self._windows = PackCache(pack_cache)
        self._refresh_lock = threading.Lock()
        self._refreshed = -float("inf")  # time.monotonic() of the last refresh's listing
        self._strays: dict[str, float] = {}  # tombstones of packs not listed -> mtime
        self._combined_seen: set[str] = set()  # combined indexes read (packindex.py)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend.where()!r})"

    # writes

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        self._fresh()
        if self._packs.locate(key) is not None:
            return False
        return self.backend.put(object_name(key), data)

    def put_many(self, items: list[tuple[str, bytes]]) -> list[bool]:
        """Objects of up to `member_max` bytes go into packs of up to PACK_TARGET bytes
        (one durable write each), larger ones through `put`; keys already present are
        skipped. A key listed twice is written once (its later entries answer False)."""
        keys = [check_key(k) for k, _ in items]
        present = self.has_many(keys) if keys else set()
        todo: dict[str, bytes] = {}
        for k, data in items:
            if k not in present:
                todo.setdefault(k, bytes(data))
        small = [(k, d) for k, d in todo.items() if len(d) <= self.member_max]
        if len(small) < 2:  # a pack of one saves nothing
            small = []
        written = {k: True for k, _ in small}
        for k, d in todo.items():
            if k not in written:
                written[k] = self.put(k, d)
        for run in groups(small):
            self._write_pack(run)
        return [written.pop(k, False) for k in keys]

    def _write_pack(self, items: list[tuple[str, bytes]], replaces: Iterable[str] = ()) -> None:
        pid, parts, members = build_parts(items, replaces)
        size = sum(len(x) for x in parts)
        # A local disk writes the pieces as they are; other backends take one body.
        put_parts = getattr(self.backend, "put_parts", None)
        body = b"".join(parts) if put_parts is None else b""
        for _ in range(3):  # a fresh name each time: never a pack some tombstone names
            name = new_pack_name(pid)
            if (put_parts(PACKS + name, parts) if put_parts is not None
                    else self.backend.put(PACKS + name, body, durable=True)):
                self._packs.add(Pack(name, size, time.time(), members,
                                     replaces=frozenset(replaces)))
                return
        raise StorageError(f"could not name a new pack in {self.backend.where()}")

    def put_file(self, key: str, src: BinaryIO) -> bool:
        check_key(key)
        self._fresh()
        if self._packs.locate(key) is not None:
            return False
        return self.backend.put_file(object_name(key), src)

    def replace(self, key: str, data: bytes) -> None:
        check_key(key)
        self.backend.put(object_name(key), data, exclusive=False)
        # The loose object now shadows any packed copy; tombstone those so every
        # process (after its next refresh) reads the new encoding.
        holding = self._packs.holding(key)
        if not holding:
            self._refresh()
            holding = self._packs.holding(key)
        for pack in holding:
            self._tombstone(pack.name, key)

    def delete(self, key: str) -> None:
        check_key(key)
        self.backend.delete([object_name(key)])
        # Packs known to this process (gc lists, which refreshes the map, before it
        # deletes).
        for pack in self._packs.holding(key):
            self._tombstone(pack.name, key)

    def flush(self, keys: Iterable[str]) -> None:
        """Make loose objects written with deferred sync durable (packs are durable
        when written); a no-op where the backend's puts are durable."""
        if self.backend.caps.deferred_sync:
            self.backend.sync(object_name(k) for k in keys if self._packs.locate(k) is None)

    def _tombstone(self, name: str, key: str) -> None:
        """Record `key` dead in pack `name` with a tombstone of its own. Then merge the
        pack's tombstones when there are many, or delete the pack when every member is
        dead."""
        tomb = new_tombstone_name(name)
        self._put_tombstone(tomb, [key])
        pack = self._packs.add_tombstone(name, tomb, "", frozenset([key]))
        if pack is None:
            return
        if pack.all_dead():
            self._remove_pack(name)
        elif len(pack.tombstones) > TOMBSTONE_MERGE:
            self._merge_tombstones(name)

    def _put_tombstone(self, tomb: str, keys: Iterable[str]) -> None:
        self.backend.put(PACKS + tomb, tombstone_body(keys), durable=True)

    def _merge_tombstones(self, name: str) -> None:
        """One tombstone with the union of the pack's known ones, then delete those.
        Idempotent: a tombstone is only deleted once its keys are in a stored one, so
        concurrent mergers (and readers listing meanwhile) never lose a key."""
        tombs = self._packs.tombstones(name)
        if len(tombs) < 2:
            return
        keys = frozenset().union(*(k for _, k in tombs.values()))
        merged = new_tombstone_name(name)
        self._put_tombstone(merged, keys)
        self._packs.add_tombstone(name, merged, "", keys, replaces=tombs)
        self.backend.delete(PACKS + t for t in tombs)

    def _remove_pack(self, name: str) -> None:
        """Delete a pack whose members are all dead: the pack, then every tombstone of
        it (listed now; one written later by a slower collector is inert: no pack will
        ever have this name again)."""
        self.backend.delete([PACKS + name])
        self._drop_pack(name)
        self.backend.delete([e.name for e in self.backend.list(PACKS + name + ".dead")])

    def touch(self, key: str) -> None:
        check_key(key)
        try:
            self.backend.touch(object_name(key))
            return
        except ObjectNotFound:
            loc = self._locate_fresh(key)
            if loc is None:
                raise ObjectNotFound(self._missing(key)) from None
        # A packed member's mtime is its pack's: refresh the whole pack.
        self.backend.touch(PACKS + loc.pack)
        self._packs.update(loc.pack, mtime=time.time())

    # reads

    def _missing(self, key: str) -> str:
        return f"object {key} is missing from {self.backend.where()}"

    def _either(self, key: str, alone: Callable[[], T], packed: Callable[[Location], T]) -> T:
        """Answer from the pack map, else the loose object, else a refreshed map. A pack
        deleted under us (gc elsewhere) is dropped and the lookup retried."""
        check_key(key)
        start = time.monotonic()
        for _ in range(3):
            loc = self._packs.locate(key)
            if loc is None:
                try:
                    return alone()
                except ObjectNotFound:
                    loc = self._locate_fresh(key, since=start)
                    if loc is None:
                        raise ObjectNotFound(self._missing(key)) from None
            try:
                return packed(loc)
            except ObjectNotFound:
                self._drop_pack(loc.pack)
        raise StorageError(f"packs holding {key} kept disappearing in {self.backend.where()}")

    def _read_packed(self, loc: Location, start: int, length: int) -> bytes | memoryview:
        """A member's bytes: directly from a local pack file, else through the window
        cache (the first read of a pack fetches the window around it, and its
        neighbours, a version's other objects, come from memory)."""
        end = min(start + length, loc.length)
        if start >= end:
            return b""
        name = PACKS + loc.pack
        if self._local:
            data = self.backend.get_range(name, loc.offset + start, end - start)
            if len(data) != end - start:
                raise CorruptObject(f"pack {loc.pack[:12]} is shorter than its index says")
            return data
        return self._windows.read(
            loc.pack, loc.pack_size, loc.offset + start, end - start,
            lambda lo, n: bytes(self.backend.get_range(name, lo, n)))

    def _drop_pack(self, name: str) -> None:
        self._packs.drop(name)
        self._windows.drop(name)

    def get(self, key: str) -> bytes:
        return self._either(key, lambda: self.backend.get(object_name(key)),
                            lambda loc: bytes(self._read_packed(loc, 0, loc.length)))

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        if length == 0:
            self.size(key)  # still raise ObjectNotFound for a missing key
            return b""
        return self._either(key, lambda: self.backend.get_range(object_name(key), start, length),
                            lambda loc: self._read_packed(loc, start, length))

    def read_into(self, key: str, start: int, buf: memoryview) -> int:
        """Read bytes start.. of an object into buf; how many (fewer at the end).
        Checkouts read block payloads this way into pooled memory."""
        read_into = getattr(self.backend, "read_into", None)

        def alone() -> int:
            if read_into is not None:
                return int(read_into(object_name(key), start, buf))
            return _copy(self.backend.get_range(object_name(key), start, len(buf)), buf)

        def packed(loc: Location) -> int:
            n = max(0, min(len(buf), loc.length - start))
            if read_into is not None and n:
                got = int(read_into(PACKS + loc.pack, loc.offset + start, buf[:n]))
                if got != n:
                    raise CorruptObject(f"pack {loc.pack[:12]} is shorter than its index says")
                return got
            return _copy(self._read_packed(loc, start, n), buf)

        return self._either(key, alone, packed)

    def get_tail(self, key: str, n: int) -> tuple[int, bytes]:
        """(size, last n bytes): how a tensor object's header is read, one request or
        one open where the backend can."""
        def alone() -> tuple[int, bytes]:
            fn = getattr(self.backend, "get_tail", None)
            if fn is not None:
                size, data = fn(object_name(key), n)
                return int(size), bytes(data)
            size = self.backend.stat(object_name(key)).size
            lo = max(0, size - n)
            return size, bytes(self.backend.get_range(object_name(key), lo, size - lo))

        def packed(loc: Location) -> tuple[int, bytes]:
            lo = max(0, loc.length - n)
            return loc.length, bytes(self._read_packed(loc, lo, loc.length - lo))

        return self._either(key, alone, packed)

    def size(self, key: str) -> int:
        return self._either(key, lambda: self.backend.stat(object_name(key)).size,
                            lambda loc: loc.length)

    def has(self, key: str) -> bool:
        check_key(key)
        self._fresh()
        try:
            self.size(key)
            return True
        except ObjectNotFound:
            return False

    def has_many(self, keys: Iterable[str]) -> set[str]:
        """Packed keys from the map, then the backend's own answer for loose ones (S3: a
        listing or HEADs, whichever is fewer requests); keys still missing get one
        refresh of the pack map."""
        asked = {check_key(k) for k in keys}
        start = time.monotonic()
        self._fresh()
        packed = {k for k in asked if self._packs.locate(k) is not None}
        rest = sorted(asked - packed)
        loose = self.backend.present([object_name(k) for k in rest]) if rest else set()
        found = packed | {k for k in rest if object_name(k) in loose}
        missing = asked - found
        if missing:
            self._refresh(since=start)
            found |= {k for k in missing if self._packs.locate(k) is not None}
        return found

    def list(self) -> Iterator[ObjectInfo]:
        """Loose objects, then live packed members not shadowed by one: a packed
        member's size is its own length, its mtime its pack's (a touch of any member
        refreshes the whole pack, which errs on the side of keeping objects).

        gc lists before it deletes, so this is where packs are tidied: packs whose
        members are all dead are removed (a collector that died, or two that each saw
        only their own tombstones), tombstones of packs that are gone are removed once
        `stray_age` old, and a pack's many tombstones are merged into one."""
        self._refresh()
        self._tidy()
        packed = self._packs.live_items()
        alone: set[str] = set()
        for e in self.backend.list(""):
            key = key_from_name(e.name)
            if key is not None:
                alone.add(key)
                yield ObjectInfo(key, e.size, e.mtime)
        for key, loc in packed:
            if key not in alone:
                yield ObjectInfo(key, loc.length, loc.mtime)

    def _tidy(self) -> None:
        try:
            for pack in self._packs.all_dead():
                self._remove_pack(pack.name)
            for name in self._packs.names():
                if len(self._packs.tombstones(name)) > TOMBSTONE_MERGE:
                    self._merge_tombstones(name)
            now = time.time()
            with self._refresh_lock:
                old = [t for t, mtime in self._strays.items() if now - mtime > self.stray_age]
            if old:
                self.backend.delete(PACKS + t for t in old)
                with self._refresh_lock:
                    for t in old:
                        self._strays.pop(t, None)
        except StorageError as exc:  # e.g. read-only credentials: tidying can wait
            log.warning("could not tidy the packs of %s: %s", self, exc)

    def close(self) -> None:
        self.backend.close()


def _copy(data: bytes | memoryview, buf: memoryview) -> int:
    n = min(len(data), len(buf))
    buf[:n] = memoryview(data)[:n]
    return n
