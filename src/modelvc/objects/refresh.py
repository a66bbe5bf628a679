"""PackRefresh: PackedStore's pack map brought up to date from a listing of packs/ (a
mixin: the map, the backend and the lock are PackedStore's; objects/packed.py states
the consistency model this serves).

A refresh lists packs/ once, drops the packs that are gone (only those known before the
listing began: one this process writes meanwhile is not in it), reads the indexes of
new packs (from a combined index of packindex.py where one lists them, else each
pack's tail) and every tombstone not read before, and enters a new pack together with
its tombstones, so no reader finds its dead members live. Remote backends read in
parallel, local ones in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from ..errors import CorruptObject, ObjectNotFound, StorageError
from .packindex import COMBINE_AFTER, Members, combined_body, is_index_name, parse_combined
from .packs import (
    PACKS,
    TAIL_READ,
    TRAILER,
    Location,
    Pack,
    PackMap,
    index_length,
    pack_id,
    pack_name,
    parse_index,
    parse_tombstone,
)

if TYPE_CHECKING:
    from .backend import Backend

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_THREADS = 16  # pack indexes and tombstones read in parallel on a refresh


class PackRefresh:
    """The pack map's refresh, for PackedStore."""

    if TYPE_CHECKING:
        backend: Backend
        map_ttl: float
        _local: bool
        _packs: PackMap
        _refresh_lock: threading.Lock
        _refreshed: float
        _strays: dict[str, float]
        _combined_seen: set[str]

        def _drop_pack(self, name: str) -> None: ...

    def _locate_fresh(self, key: str, since: float | None = None) -> Location | None:
        self._refresh(since)
        return self._packs.locate(key)

    def refresh(self) -> None:
        """Bring the pack map up to date now: a reader whose bytes failed their id
        check asks before it raises (another process may have replaced the object)."""
        self._refresh(since=time.monotonic())

    def _fresh(self) -> None:
        if time.monotonic() - self._refreshed > self.map_ttl:
            self._refresh()

    def _refresh(self, since: float | None = None) -> None:
        """Bring the pack map up to date with the backend: new packs (their indexes),
        deleted packs, new tombstones, mtimes. With `since`, a refresh whose listing
        started after it (another thread's, meanwhile) is enough."""
        with self._refresh_lock:
            if since is not None and self._refreshed >= since:
                return
            for _ in range(3):
                started = time.monotonic()
                if self._refresh_once(started):
                    break
            self._refreshed = started

    def _refresh_once(self, started: float) -> bool:
        """One listing of packs/. False when a listed tombstone was gone before it was
        read (merged meanwhile: its keys are in a tombstone this listing may have
        missed), so the caller lists again."""
        listed: dict[str, tuple[int, float]] = {}
        tombs: dict[str, dict[str, tuple[str, float]]] = {}  # pack -> name -> etag, mtime
        combined: list[str] = []
        # Only packs known before the listing began can be judged gone by it: one this
        # process writes meanwhile (another thread's put_many) is missing from it too.
        known_before = self._packs.names()
        for e in self.backend.list(PACKS):
            rest = e.name[len(PACKS):]
            if is_index_name(rest):
                combined.append(rest)
                continue
            parsed = pack_name(rest)
            if parsed is None:
                continue
            name, is_tomb = parsed
            if is_tomb:
                tombs.setdefault(name, {})[rest] = (e.etag, e.mtime)
            else:
                listed[name] = (e.size, e.mtime)
        self._combined_seen &= set(combined)
        for name in known_before - set(listed):
            self._drop_pack(name)
        known = self._packs.names()
        new = [name for name in listed if name not in known]
        # A new pack enters the map only with its tombstones (below): published bare, a
        # reader thread found its dead members live, bytes `replace`/`delete` retired.
        found = self._read_combined(combined, set(new), listed) if new else {}
        alone = [name for name in new if name not in found]
        indexes = self._parallel(lambda n: self._read_index(n, listed[n][0]), alone)
        found.update((n, ix) for n, ix in zip(alone, indexes, strict=True) if ix)
        # Tombstones: each read once (they are write-once; the one mutable `.dead` of
        # S3 stores written before nonces is re-read when its ETag changes).
        mapped = self._packs.names()  # listed packs already in the map (or written here)
        found = {name: v for name, v in found.items() if name not in mapped}
        have = {name: self._packs.tombstones(name) for name in listed if name in mapped}
        have.update((name, {}) for name in found)
        todo = [t for name, ts in tombs.items() if name in have for t, (etag, _) in ts.items()
                if t not in have[name] or (t.endswith(".dead") and have[name][t][0] != etag)]
        read: dict[str, frozenset[str] | None] = dict(
            zip(todo, self._parallel(self._read_tombstone, todo), strict=True))
        for name, (_, mtime) in listed.items():
            if name not in have:
                continue
            current: dict[str, tuple[str, frozenset[str]]] = {}
            for t, (etag, _) in tombs.get(name, {}).items():
                keys = read[t] if t in read else have[name].get(t, (etag, frozenset()))[1]
                if keys is not None:
                    current[t] = (etag, keys)
            if name in found:  # new: members and tombstones in one step
                if any(read.get(t, ()) is None for t in tombs.get(name, {})):
                    continue  # one was merged meanwhile: the next listing adds the pack
                held, replaces = found[name]
                dead = set().union(*(k for _, k in current.values())) & set(held)
                self._packs.add(Pack(name, listed[name][0], mtime, held, tombstones=current,
                                     dead=dead, replaces=replaces))
                continue
            self._packs.set_tombstones(name, current, since=started)
            self._packs.update(name, mtime=mtime)
        if len(alone) >= COMBINE_AFTER:
            self._combine()
        self._strays = {t: mtime for name, ts in tombs.items() if name not in listed
                        for t, (_, mtime) in ts.items()}
        return all(keys is not None for keys in read.values())

    def _read_combined(self, combined: Sequence[str], new: set[str],
                       listed: dict[str, tuple[int, float]]
                       ) -> dict[str, tuple[Members, frozenset[str]]]:
        """Members of the `new` packs that the combined indexes not read before list
        (with the listed size); the rest are read one by one."""
        found: dict[str, tuple[Members, frozenset[str]]] = {}
        for rest in combined:
            if rest in self._combined_seen:
                continue
            self._combined_seen.add(rest)
            try:
                entries = parse_combined(rest, bytes(self.backend.get(PACKS + rest)))
            except ObjectNotFound:  # replaced by a newer one meanwhile
                continue
            if entries is None:
                log.warning("ignoring unreadable combined pack index %s in %s", rest, self)
                continue
            for name, (size, members, replaces) in entries.items():
                if name in new and listed[name][0] == size:
                    found[name] = (members, replaces)
        return found

    def _combine(self) -> None:
        """Write a combined index of every pack in the map, then delete the combined
        indexes read before (each pack of theirs still listed is in the map). Best
        effort: a store this process may not write to (read-only credentials) keeps
        reading pack indexes one by one."""
        rest, body = combined_body(self._packs.packs())
        try:
            self.backend.put(PACKS + rest, body, durable=True)
            old, self._combined_seen = self._combined_seen - {rest}, {rest}
            self.backend.delete(PACKS + r for r in old)
        except (StorageError, OSError) as exc:
            log.info("could not write a combined pack index to %s: %s", self, exc)

    def _parallel(self, fn: Callable[[str], T], names: Sequence[str]) -> Sequence[T]:
        """fn over names: in threads for a remote backend (requests overlap), in order
        on a local one (a read is a system call; threads would only add overhead)."""
        if self._local or len(names) < 2:
            return [fn(n) for n in names]
        with ThreadPoolExecutor(min(READ_THREADS, len(names))) as pool:
            return list(pool.map(fn, names))

    def _read_index(self, name: str, size: int
                    ) -> tuple[dict[str, tuple[int, int]], frozenset[str]] | None:
        """A pack's members from its end: one ranged read usually holds the trailer and
        the index, a second fetches a longer index. A corrupt pack is skipped (logged):
        one bad pack must not make the whole store unreadable."""
        path = PACKS + name
        pid = pack_id(name)
        try:
            if size < TRAILER:
                raise CorruptObject(f"pack {pid[:12]} is too short to be a pack")
            n = min(size, TAIL_READ)
            tail = bytes(self.backend.get_range(path, size - n, n))
            ilen = index_length(tail, pid)
            if ilen + TRAILER > size:
                raise CorruptObject(f"pack {pid[:12]} claims a {ilen}-byte index")
            if ilen + TRAILER <= len(tail):
                index = tail[len(tail) - TRAILER - ilen : len(tail) - TRAILER]
            else:
                index = bytes(self.backend.get_range(path, size - TRAILER - ilen, ilen))
            return parse_index(pid, index, size)
        except ObjectNotFound:  # deleted between the listing and this read
            return None
        except CorruptObject as exc:
            log.warning("skipping pack %s in %s: %s", name, self, exc)
            return None

    def _read_tombstone(self, tomb: str) -> frozenset[str] | None:
        """The keys a tombstone lists; None when it is gone (merged or its pack
        removed meanwhile)."""
        try:
            body = self.backend.get(PACKS + tomb)
        except ObjectNotFound:
            return None
        keys = parse_tombstone(body)
        if keys is None:
            log.warning("ignoring unreadable tombstone %s in %s", tomb, self)
            return frozenset()
        return keys
