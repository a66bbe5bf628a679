"""S3Store: objects in an S3-compatible bucket (AWS, SeaweedFS, MinIO, ...).

    s3://bucket/<prefix>ab/cdef0123...   (key "abcdef0123...", same fan-out as local)

boto3 is imported lazily: the core install does not depend on it. Write-once uses a
conditional put (If-None-Match: *), so of two writers racing on one key exactly one
stores it and the other gets False. Multipart uploads (above 64 MiB) cannot carry that
condition portably, so they check `has` first; a race there is harmless since both
writers upload identical content under a content id. A failed multipart upload is
aborted, and gc aborts incomplete ones older than its grace period (s3_multipart).

`put_many` packs small objects into one S3 object each (`s3_packs`). Reads look a key
up in the in-memory pack map first, then as an individual object, and on a miss refresh
the map from a listing of `packs/` (one LIST per 1000 names, one ranged GET per new
pack, one GET per new tombstone). Packed bytes are read in aligned windows kept in a
bounded LRU (`PackCache`, MODELVC_S3_PACK_CACHE_MB, 64 by default), so reading a
version's objects costs a request per window of its pack, not one per object.

An individual object shadows a packed copy: `replace` writes the key on its own and
then tombstones the packed copy; `delete` does the same. A tombstone is a write-once
object of its own (`packs/<pack>.dead.<uuid>`), so any number of collectors may
tombstone members of one pack at once without losing each other's deletions; a pack's
many tombstones are merged (union written first, parts deleted after), and a pack is
removed once all its members are dead (by the collector that sees it, or by the next
`list`). Another process sees a replace or a delete at its next refresh; until then it
may read the old encoding (same decoded bytes), just as ObjectIO's header cache would.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar

from ..errors import CorruptObject, ObjectNotFound, StorageError, UsageError
from ._s3util import (
    ConcurrentWrite,
    Precondition,
    RangeNotSatisfiable,
    client_error,
    key_from_name,
    make_client,
    remaining,
)
from .base import ObjectInfo, check_key
from .s3_multipart import MultipartMixin
from .s3_packs import (
    MEMBER_MAX,
    PACK_CACHE,
    PACKS,
    TAIL_READ,
    TOMBSTONE_MERGE,
    TRAILER,
    Location,
    Pack,
    PackCache,
    PackMap,
    build,
    groups,
    index_length,
    new_pack_name,
    new_tombstone_name,
    pack_id,
    pack_name,
    parse_index,
    parse_tombstone,
    tombstone_body,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
MiB = 1 << 20
MULTIPART_THRESHOLD = 64 * MiB
HEAD_THREADS = 16


class S3Store(MultipartMixin):
    # Requests dominate: a commit holds its small objects for one put_many of packs
    # (ObjectIO.batched) instead of a HEAD and a PUT each.
    batched_writes = True
    list_page_size = 1000  # S3's maximum; tests shrink it to exercise has_many's paths
    # A "present" answer for a packed key (has, has_many, put's write-once check) comes
    # from a pack map at most this old: gc in another process may have deleted the
    # member since, and a writer deduplicating against it would lose the object.
    map_ttl = 10.0
    # Tombstones whose pack is gone are removed by list() once this old (a younger one
    # may belong to a pack created after the listing passed its name).
    stray_age = 600.0

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        client: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        pack_cache_mb: int | None = None,
    ) -> None:
        if not bucket:
            raise UsageError("an S3 store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is None:
            client = make_client(
                endpoint_url,
                region,
                access_key,
                secret_key,
                connect_timeout,
                read_timeout,
                max_attempts,
                HEAD_THREADS + 4,
            )
        self._client = client
        self._packs = PackMap()
        if pack_cache_mb is None:
            env = os.environ.get("MODELVC_S3_PACK_CACHE_MB")
            cache = int(env) << 20 if env else PACK_CACHE
        else:
            cache = pack_cache_mb << 20
        self._windows = PackCache(cache)
        self._refresh_lock = threading.Lock()
        self._refreshed = -float("inf")  # time.monotonic() of the last refresh's listing
        self._strays: dict[str, float] = {}  # tombstones of packs not listed -> mtime
        self.sleep = time.sleep
        self.endpoint = str(getattr(client.meta, "endpoint_url", None) or endpoint_url)

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r})"

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}{key[:2]}/{key[2:]}"

    # writes

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        self._fresh()
        if self._packs.locate(key) is not None:
            return False
        if len(data) > MULTIPART_THRESHOLD:  # a single PUT tops out at 5 GiB
            return self.put_file(key, io.BytesIO(data))
        return self._put_new(self.object_key(key), data, key)

    def _put_new(self, name: str, data: bytes, what: str) -> bool:
        """Conditional PUT: True if stored, False if `name` already exists."""
        for attempt in range(5):
            try:
                with self._translated(what, "write"):
                    self._client.put_object(
                        Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*"
                    )
                return True
            except Precondition:
                return False
            except ConcurrentWrite:  # another conditional put of this key is in flight
                time.sleep(0.05 * 2**attempt)
        raise StorageError(f"writes of {what} kept conflicting at {self.endpoint}")

    def put_many(self, items: list[tuple[str, bytes]]) -> list[bool]:
        """Objects of up to MEMBER_MAX bytes go into packs of up to PACK_TARGET bytes
        (one PUT each), larger ones through `put`; keys already present are skipped."""
        keys = [check_key(k) for k, _ in items]
        present = self.has_many(keys) if keys else set()
        todo: dict[str, bytes] = {}
        for k, data in items:
            if k not in present:
                todo.setdefault(k, bytes(data))
        small = [(k, d) for k, d in todo.items() if len(d) <= MEMBER_MAX]
        if len(small) < 2:  # a pack of one saves nothing
            small = []
        written = {k: True for k, _ in small}
        for k, d in todo.items():
            if k not in written:
                written[k] = self.put(k, d)
        for run in groups(small):
            self._write_pack(run)
        out: list[bool] = []
        for k in keys:  # a key listed twice is written once
            out.append(written.pop(k, False))
        return out

    def _write_pack(self, items: list[tuple[str, bytes]]) -> None:
        pid, body, members = build(items)
        for _ in range(3):  # a fresh name each time: never a pack some tombstone names
            name = new_pack_name(pid)
            if self._put_new(self._pack_key(name), body, f"pack {pid}"):
                self._packs.add(Pack(name, len(body), time.time(), members))
                return
        raise StorageError(f"could not name a new pack at {self.endpoint}")

    def put_file(self, key: str, src: BinaryIO) -> bool:
        size = remaining(src)
        if size is not None and size <= MULTIPART_THRESHOLD:
            return self.put(key, src.read())
        if self.has(key):
            return False
        self._multipart(key, self.object_key(key), src)  # aborted if it fails
        return True

    def replace(self, key: str, data: bytes) -> None:
        with self._translated(key, "write"):
            self._client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        # The individual object now shadows any packed copy; tombstone those so every
        # process (after its next refresh) reads the new encoding.
        holding = self._packs.holding(key)
        if not holding:
            self._refresh()
            holding = self._packs.holding(key)
        for pack in holding:
            self._tombstone(pack.name, key)

    def delete(self, key: str) -> None:
        with self._translated(key, "delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        # Packs known to this process (gc lists, which refreshes the map, before it
        # deletes).
        for pack in self._packs.holding(key):
            self._tombstone(pack.name, key)

    def _tombstone(self, name: str, key: str) -> None:
        """Record `key` dead in pack `name` with a tombstone of its own (write-once,
        unique name: concurrent collectors never overwrite each other's). Then merge
        the pack's tombstones when there are many, or delete the pack when every
        member is dead."""
        tomb = new_tombstone_name(name)
        etag = self._put_tombstone(tomb, [key])
        pack = self._packs.add_tombstone(name, tomb, etag, frozenset([key]))
        if pack is None:
            return
        if pack.all_dead():
            self._remove_pack(name)
        elif len(pack.tombstones) > TOMBSTONE_MERGE:
            self._merge_tombstones(name)

    def _put_tombstone(self, tomb: str, keys: Iterable[str]) -> str:
        with self._translated(f"tombstone {tomb}", "write"):
            resp = self._client.put_object(Bucket=self.bucket, Key=self._pack_key(tomb),
                                           Body=tombstone_body(keys), IfNoneMatch="*")
        return str(resp.get("ETag", ""))

    def _merge_tombstones(self, name: str) -> None:
        """One tombstone with the union of the pack's known ones, then delete those.
        Idempotent: a tombstone is only deleted once its keys are in a stored one, so
        concurrent mergers (and readers listing meanwhile) never lose a key."""
        tombs = self._packs.tombstones(name)
        if len(tombs) < 2:
            return
        keys = frozenset().union(*(k for _, k in tombs.values()))
        merged = new_tombstone_name(name)
        etag = self._put_tombstone(merged, keys)
        self._packs.add_tombstone(name, merged, etag, keys, replaces=tombs)
        self._delete_names(self._pack_key(t) for t in tombs)

    def _remove_pack(self, name: str) -> None:
        """Delete a pack whose members are all dead: the pack, then every tombstone of
        it (listed now; one written later by a slower collector is inert: no pack will
        ever have this name again)."""
        with self._translated(f"pack {name}", "delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self._pack_key(name))
        self._drop_pack(name)
        self._delete_names(self._list_names(self._pack_key(name) + ".dead"))

    def _list_names(self, prefix: str) -> list[str]:
        out: list[str] = []
        with self._translated(None, "list"):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                out += [str(o["Key"]) for o in page.get("Contents", [])]
        return out

    def _delete_names(self, names: Iterable[str]) -> None:
        """Delete whole names (not object keys), 1000 per request; missing ones are fine."""
        todo = list(names)
        for i in range(0, len(todo), 1000):
            with self._translated(None, "delete"):
                resp = self._client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": n} for n in todo[i : i + 1000]], "Quiet": True})
            errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                raise StorageError(f"cannot delete {errors[0].get('Key')} in "
                                   f"s3://{self.bucket}/{self.prefix} at {self.endpoint}: "
                                   f"{errors[0].get('Code')} {errors[0].get('Message', '')}")

    def touch(self, key: str) -> None:
        try:
            self._touch_name(self.object_key(key), key)
            return
        except ObjectNotFound:
            loc = self._locate_fresh(key)
            if loc is None:
                raise
        # A packed member's mtime is its pack's: refresh the whole pack.
        self._touch_name(self._pack_key(loc.pack), key)
        self._packs.update(loc.pack, mtime=time.time())

    def _touch_name(self, name: str, what: str) -> None:
        # S3 has no utime: copying an object onto itself with new metadata is the
        # documented way to refresh LastModified. (Single copy limit: 5 GiB.)
        with self._translated(what, "touch"):
            self._client.copy_object(
                Bucket=self.bucket,
                Key=name,
                CopySource={"Bucket": self.bucket, "Key": name},
                MetadataDirective="REPLACE",
                Metadata={"touched": f"{time.time():.3f}"},
            )

    # reads

    def _either(self, key: str, alone: Callable[[], T], packed: Callable[[Location], T]) -> T:
        """Answer from the pack map, else the individual object, else a refreshed map.
        A pack deleted under us (gc elsewhere) is dropped and the lookup retried."""
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
                        raise
            try:
                return packed(loc)
            except ObjectNotFound:
                self._drop_pack(loc.pack)
        raise StorageError(f"packs holding {key} kept disappearing at {self.endpoint}")

    def _read_packed(self, loc: Location, start: int, length: int) -> bytes:
        """Through the window cache: the first read of a pack fetches the window
        around it, and its neighbours (a version's other objects) come from memory."""
        end = min(start + length, loc.length)
        if start >= end:
            return b""
        name, what = self._pack_key(loc.pack), f"pack {loc.pack}"
        return self._windows.read(
            loc.pack, loc.pack_size, loc.offset + start, end - start,
            lambda lo, n: self._get_range_name(name, lo, n, what))

    def _drop_pack(self, pid: str) -> None:
        self._packs.drop(pid)
        self._windows.drop(pid)

    def _get_range_name(self, name: str, start: int, length: int, what: str) -> bytes:
        with self._translated(what, "read"):
            resp = self._client.get_object(
                Bucket=self.bucket, Key=name, Range=f"bytes={start}-{start + length - 1}"
            )
            return bytes(resp["Body"].read())

    def get(self, key: str) -> bytes:
        def alone() -> bytes:
            with self._translated(key, "read"):
                resp = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
                return bytes(resp["Body"].read())

        return self._either(key, alone, lambda loc: self._read_packed(loc, 0, loc.length))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        if length == 0:
            self.size(key)  # still raise ObjectNotFound for a missing key
            return b""

        def alone() -> bytes:
            try:
                return self._get_range_name(self.object_key(key), start, length, key)
            except RangeNotSatisfiable:  # start past the end of an existing object
                return b""

        return self._either(key, alone, lambda loc: self._read_packed(loc, start, length))

    def size(self, key: str) -> int:
        return self._either(key, lambda: self._size_alone(key), lambda loc: loc.length)

    def _size_alone(self, key: str) -> int:
        with self._translated(key, "stat"):
            resp = self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            return int(resp["ContentLength"])

    def _has_alone(self, key: str) -> bool:
        try:
            self._size_alone(key)
            return True
        except ObjectNotFound:
            return False

    def has(self, key: str) -> bool:
        check_key(key)
        self._fresh()
        try:
            self.size(key)
            return True
        except ObjectNotFound:
            return False

    def has_many(self, keys: Iterable[str]) -> set[str]:
        """Packed keys from the map; then list a few pages and HEAD what the listing did
        not reach; keys still missing get one refresh of the pack map.

        Measured on SeaweedFS, 1000 keys: 16 concurrent HEADs take ~0.9 s, one listing
        page (1000 names) ~0.05 s. A listing's cost grows with the bucket, HEADs' with
        the question, so list at most len(keys)/64 + 1 pages: a small store is answered
        by its listing, a huge one by HEADs. Names list in key order (the fan-out keeps
        it), so every wanted key up to the last listed name is already settled.
        """
        asked = {check_key(k) for k in keys}
        start = time.monotonic()
        self._fresh()
        packed = {k for k in asked if self._packs.locate(k) is not None}
        found = packed | self._has_many_alone(sorted(asked - packed))
        missing = asked - found
        if missing:
            self._refresh(since=start)
            found |= {k for k in missing if self._packs.locate(k) is not None}
        return found

    def _has_many_alone(self, wanted: list[str]) -> set[str]:
        if not wanted:
            return set()
        found, last = self._list_until(wanted, max_pages=1 + len(wanted) // 64)
        rest = [k for k in wanted if last is not None and k > last]
        if len(rest) <= 1:
            return found | {k for k in rest if self._has_alone(k)}
        with ThreadPoolExecutor(min(HEAD_THREADS, len(rest))) as pool:
            present = pool.map(self._has_alone, rest)
            return found | {k for k, ok in zip(rest, present, strict=True) if ok}

    def _list_until(self, wanted: list[str], max_pages: int) -> tuple[set[str], str | None]:
        """Wanted keys seen in up to `max_pages` listing pages, and the last key the
        listing reached ("" for none; None when it listed everything)."""
        want = set(wanted)
        found: set[str] = set()
        last = ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix,
            StartAfter=self._before(wanted[0]),
            PaginationConfig={"PageSize": self.list_page_size},
        )
        with self._translated(None, "list"):
            for n, page in enumerate(pages, 1):
                for obj in page.get("Contents", []):
                    key = self._key_of(obj["Key"])
                    if key is not None:
                        last = key
                        if key in want:
                            found.add(key)
                if not page.get("IsTruncated"):
                    return found, None
                if n >= max_pages or last >= wanted[-1]:
                    return found, last
        return found, None

    def _before(self, key: str) -> str:
        """A name sorting just before `key`'s (StartAfter is exclusive)."""
        name = self.object_key(key)  # ends in a hex digit, so "x0" -> "x/~"
        return name[:-1] + chr(ord(name[-1]) - 1) + "~"

    def _key_of(self, name: str) -> str | None:
        return key_from_name(name[len(self.prefix) :])

    def list(self) -> Iterator[ObjectInfo]:
        """Individual objects, then live packed members not shadowed by one: a packed
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
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translated(None, "list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    key = self._key_of(obj["Key"])
                    if key is not None:
                        alone.add(key)
                        yield ObjectInfo(key, int(obj["Size"]), obj["LastModified"].timestamp())
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
                self._delete_names(self._pack_key(t) for t in old)
                with self._refresh_lock:
                    for t in old:
                        self._strays.pop(t, None)
        except StorageError as exc:  # e.g. read-only credentials: tidying can wait
            log.warning("could not tidy the packs of %s: %s", self, exc)

    # packs

    def _pack_key(self, name: str) -> str:
        """The S3 name of a pack or tombstone, from its name under packs/."""
        return f"{self.prefix}{PACKS}{name}"

    def _locate_fresh(self, key: str, since: float | None = None) -> Location | None:
        self._refresh(since)
        return self._packs.locate(key)

    def _fresh(self) -> None:
        if time.monotonic() - self._refreshed > self.map_ttl:
            self._refresh()

    def _refresh(self, since: float | None = None) -> None:
        """Bring the pack map up to date with the bucket: new packs (their indexes),
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
        paginator = self._client.get_paginator("list_objects_v2")
        with self._translated(None, "list"):
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=self.prefix + PACKS,
                PaginationConfig={"PageSize": self.list_page_size},
            ):
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(self.prefix + PACKS):]
                    parsed = pack_name(rest)
                    if parsed is None:
                        continue
                    name, is_tomb = parsed
                    mtime = obj["LastModified"].timestamp()
                    if is_tomb:
                        tombs.setdefault(name, {})[rest] = (str(obj.get("ETag", "")), mtime)
                    else:
                        listed[name] = (int(obj["Size"]), mtime)
        known = self._packs.names()
        for name in known - set(listed):
            self._drop_pack(name)
        new = [name for name in listed if name not in known]
        if new:
            with ThreadPoolExecutor(min(HEAD_THREADS, len(new))) as pool:
                indexes = list(pool.map(lambda n: self._read_index(n, listed[n][0]), new))
            for name, members in zip(new, indexes, strict=True):
                if members is not None:
                    self._packs.add(Pack(name, listed[name][0], listed[name][1], members))
        # Tombstones: each read once (they are write-once; the one mutable `.dead` of
        # stores written before nonces is re-read when its ETag changes).
        mapped = self._packs.names()  # listed packs whose index was readable
        have = {name: self._packs.tombstones(name) for name in listed if name in mapped}
        todo = [t for name, ts in tombs.items() if name in have for t, (etag, _) in ts.items()
                if t not in have[name] or (t.endswith(".dead") and have[name][t][0] != etag)]
        read: dict[str, frozenset[str] | None] = {}
        if todo:
            with ThreadPoolExecutor(min(HEAD_THREADS, len(todo))) as pool:
                read = dict(zip(todo, pool.map(self._read_tombstone, todo), strict=True))
        for name, (_, mtime) in listed.items():
            if name not in have:
                continue
            current: dict[str, tuple[str, frozenset[str]]] = {}
            for t, (etag, _) in tombs.get(name, {}).items():
                keys = read[t] if t in read else have[name].get(t, (etag, frozenset()))[1]
                if keys is not None:
                    current[t] = (etag, keys)
            self._packs.set_tombstones(name, current, since=started)
            self._packs.update(name, mtime=mtime)
        self._strays = {t: mtime for name, ts in tombs.items() if name not in listed
                        for t, (_, mtime) in ts.items()}
        return all(keys is not None for keys in read.values())

    def _read_index(self, name: str, size: int) -> dict[str, tuple[int, int]] | None:
        """A pack's members from its end: one ranged GET usually holds the trailer and
        the index, a second fetches a longer index. A corrupt pack is skipped (logged):
        one bad pack must not make the whole store unreadable."""
        key = self._pack_key(name)
        pid = pack_id(name)
        what = f"pack {name}"
        try:
            if size < TRAILER:
                raise CorruptObject(f"pack {pid[:12]} is too short to be a pack")
            n = min(size, TAIL_READ)
            tail = self._get_range_name(key, size - n, n, what)
            ilen = index_length(tail, pid)
            if ilen + TRAILER > size:
                raise CorruptObject(f"pack {pid[:12]} claims a {ilen}-byte index")
            if ilen + TRAILER <= len(tail):
                index = tail[len(tail) - TRAILER - ilen : len(tail) - TRAILER]
            else:
                index = self._get_range_name(key, size - TRAILER - ilen, ilen, what)
            return parse_index(pid, index, size)
        except ObjectNotFound:  # deleted between the listing and this read
            return None
        except CorruptObject as exc:
            log.warning("skipping %s in %s: %s", what, self, exc)
            return None

    def _read_tombstone(self, tomb: str) -> frozenset[str] | None:
        """The keys a tombstone lists; None when it is gone (merged or its pack
        removed meanwhile)."""
        try:
            with self._translated(f"tombstone {tomb}", "read"):
                resp = self._client.get_object(Bucket=self.bucket, Key=self._pack_key(tomb))
                body = resp["Body"].read()
        except ObjectNotFound:
            return None
        keys = parse_tombstone(body)
        if keys is None:
            log.warning("ignoring unreadable tombstone %s in %s", tomb, self)
            return frozenset()
        return keys

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    @contextmanager
    def _translated(self, key: str | None, action: str) -> Iterator[None]:
        """botocore / transfer errors -> the modelvc error tree, naming the endpoint."""
        import botocore.exceptions as bce
        from boto3.exceptions import Boto3Error

        where = f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"
        try:
            yield
        except bce.ClientError as exc:
            raise client_error(exc, key, action, where) from exc
        except (bce.BotoCoreError, Boto3Error, OSError) as exc:
            raise StorageError(
                f"cannot {action} {key or 'objects'} in {where}: {exc}",
                hint="is the S3 endpoint up and reachable?",
            ) from exc
