"""S3Store: objects in an S3-compatible bucket (AWS, SeaweedFS, MinIO, ...).

    s3://bucket/<prefix>ab/cdef0123...   (key "abcdef0123...", same fan-out as local)

boto3 is imported lazily: the core install does not depend on it. Write-once uses a
conditional put (If-None-Match: *), so of two writers racing on one key exactly one
stores it and the other gets False. Multipart uploads (above 64 MiB) cannot carry that
condition portably, so they check `has` first; a race there is harmless since both
writers upload identical content under a content id.

`put_many` packs small objects into one S3 object each (`s3_packs`). Reads look a key
up in the in-memory pack map first, then as an individual object, and on a miss refresh
the map from a listing of `packs/` (one LIST per 1000 packs, one ranged GET per new
pack). Packed bytes are read in aligned windows kept in a bounded LRU (`PackCache`,
MODELVC_S3_PACK_CACHE_MB, 64 by default), so reading a version's objects costs a
request per window of its pack, not one per object. An individual object shadows a
packed copy: `replace` writes the key on its own and then tombstones the packed copy
(`packs/<id>.dead`); `delete` does the same, and removes a pack once all its members
are dead. Another process sees a replace or a
delete at its next refresh; until then it may read the old encoding (same decoded
bytes), just as ObjectIO's header cache would.
"""

from __future__ import annotations

import io
import json
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
from .s3_packs import (
    MEMBER_MAX,
    PACK_CACHE,
    PACKS,
    TAIL_READ,
    TRAILER,
    Location,
    Pack,
    PackCache,
    PackMap,
    build,
    groups,
    index_length,
    pack_name,
    parse_index,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
MiB = 1 << 20
MULTIPART_THRESHOLD = 64 * MiB
PART_SIZE = 16 * MiB
HEAD_THREADS = 16


class S3Store:
    list_page_size = 1000  # S3's maximum; tests shrink it to exercise has_many's paths
    # A "present" answer for a packed key (has, has_many, put's write-once check) comes
    # from a pack map at most this old: gc in another process may have deleted the
    # member since, and a writer deduplicating against it would lose the object.
    map_ttl = 10.0

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
        if not self._put_new(self._pack_key(pid), body, f"pack {pid}"):
            # The same bytes are there already (ids are content-derived). Its members
            # were absent, so gc had tombstoned them: bring them back, and refresh the
            # pack's mtime so gc's grace period counts from now.
            with self._translated(f"pack {pid}", "write"):
                self._client.delete_object(Bucket=self.bucket, Key=self._pack_key(pid, True))
            self._touch_name(self._pack_key(pid), f"pack {pid}")
        self._packs.add(Pack(pid, len(body), time.time(), members))

    def put_file(self, key: str, src: BinaryIO) -> bool:
        size = remaining(src)
        if size is not None and size <= MULTIPART_THRESHOLD:
            return self.put(key, src.read())
        if self.has(key):
            return False
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=PART_SIZE,
            max_concurrency=4,
        )
        with self._translated(key, "write"):
            self._client.upload_fileobj(src, self.bucket, self.object_key(key), Config=config)
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
            self._tombstone(pack.id, key)

    def delete(self, key: str) -> None:
        with self._translated(key, "delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        # Packs known to this process (gc lists, which refreshes the map, before it
        # deletes).
        for pack in self._packs.holding(key):
            self._tombstone(pack.id, key)

    def _tombstone(self, pid: str, key: str) -> None:
        """Record `key` dead in pack `pid` (read-merge-write of its .dead list); delete
        the pack once every member is dead."""
        pack = self._packs.get(pid)
        if pack is None:
            return
        dead = self._read_dead(pid)[0] | pack.dead | {key}
        where = f"pack {pid}"
        if dead >= set(pack.members):
            # .dead first: a crash in between leaves a pack whose members all came back
            # (garbage gc finds again), never a stray .dead that would kill the members
            # of an identical pack written later.
            with self._translated(where, "delete"):
                self._client.delete_object(Bucket=self.bucket, Key=self._pack_key(pid, True))
                self._client.delete_object(Bucket=self.bucket, Key=self._pack_key(pid))
            self._drop_pack(pid)
            return
        body = json.dumps(sorted(dead & set(pack.members))).encode()
        with self._translated(where, "write"):
            resp = self._client.put_object(
                Bucket=self.bucket, Key=self._pack_key(pid, True), Body=body
            )
        self._packs.update(pid, dead=dead, dead_etag=str(resp.get("ETag", "")))

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
        refreshes the whole pack, which errs on the side of keeping objects)."""
        self._refresh()
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

    # packs

    def _pack_key(self, pid: str, dead: bool = False) -> str:
        return f"{self.prefix}{PACKS}{pid}{'.dead' if dead else ''}"

    def _locate_fresh(self, key: str, since: float | None = None) -> Location | None:
        self._refresh(since)
        return self._packs.locate(key)

    def _fresh(self) -> None:
        if time.monotonic() - self._refreshed > self.map_ttl:
            self._refresh()

    def _refresh(self, since: float | None = None) -> None:
        """Bring the pack map up to date with the bucket: new packs (their indexes),
        deleted packs, changed .dead lists and mtimes. With `since`, a refresh whose
        listing started after it (another thread's, meanwhile) is enough."""
        with self._refresh_lock:
            if since is not None and self._refreshed >= since:
                return
            started = time.monotonic()
            listed: dict[str, tuple[int, float]] = {}
            dead_tags: dict[str, str] = {}
            paginator = self._client.get_paginator("list_objects_v2")
            with self._translated(None, "list"):
                for page in paginator.paginate(
                    Bucket=self.bucket, Prefix=self.prefix + PACKS,
                    PaginationConfig={"PageSize": self.list_page_size},
                ):
                    for obj in page.get("Contents", []):
                        parsed = pack_name(obj["Key"][len(self.prefix + PACKS):])
                        if parsed is None:
                            continue
                        pid, is_dead = parsed
                        if is_dead:
                            dead_tags[pid] = str(obj.get("ETag", ""))
                        else:
                            listed[pid] = (int(obj["Size"]), obj["LastModified"].timestamp())
            known = self._packs.ids()
            for pid in known - set(listed):
                self._drop_pack(pid)
            new = [pid for pid in listed if pid not in known]
            if new:
                with ThreadPoolExecutor(min(HEAD_THREADS, len(new))) as pool:
                    indexes = list(pool.map(lambda p: self._read_index(p, listed[p][0]), new))
                for pid, members in zip(new, indexes, strict=True):
                    if members is not None:
                        self._packs.add(Pack(pid, listed[pid][0], listed[pid][1], members))
            for pid, (_, mtime) in listed.items():
                pack = self._packs.get(pid)
                if pack is None:
                    continue
                tag = dead_tags.get(pid)
                if tag is None:
                    self._packs.update(pid, mtime=mtime, dead=set(), dead_etag=None)
                elif tag != pack.dead_etag:
                    dead, etag = self._read_dead(pid)
                    self._packs.update(pid, mtime=mtime, dead=dead, dead_etag=etag or tag)
                else:
                    self._packs.update(pid, mtime=mtime)
            self._refreshed = started

    def _read_index(self, pid: str, size: int) -> dict[str, tuple[int, int]] | None:
        """A pack's members from its end: one ranged GET usually holds the trailer and
        the index, a second fetches a longer index. A corrupt pack is skipped (logged):
        one bad pack must not make the whole store unreadable."""
        name = self._pack_key(pid)
        what = f"pack {pid}"
        try:
            if size < TRAILER:
                raise CorruptObject(f"pack {pid[:12]} is too short to be a pack")
            n = min(size, TAIL_READ)
            tail = self._get_range_name(name, size - n, n, what)
            ilen = index_length(tail, pid)
            if ilen + TRAILER > size:
                raise CorruptObject(f"pack {pid[:12]} claims a {ilen}-byte index")
            if ilen + TRAILER <= len(tail):
                index = tail[len(tail) - TRAILER - ilen : len(tail) - TRAILER]
            else:
                index = self._get_range_name(name, size - TRAILER - ilen, ilen, what)
            return parse_index(pid, index, size)
        except ObjectNotFound:  # deleted between the listing and this read
            return None
        except CorruptObject as exc:
            log.warning("skipping %s in %s: %s", what, self, exc)
            return None

    def _read_dead(self, pid: str) -> tuple[set[str], str | None]:
        """A pack's tombstones and the ETag of its .dead object (none: empty, None)."""
        try:
            with self._translated(f"pack {pid}", "read"):
                resp = self._client.get_object(Bucket=self.bucket, Key=self._pack_key(pid, True))
                body = resp["Body"].read()
        except ObjectNotFound:
            return set(), None
        try:
            dead = {str(k) for k in json.loads(body)}
        except (ValueError, TypeError):
            log.warning("ignoring an unreadable tombstone list of pack %s in %s", pid, self)
            dead = set()
        return dead, str(resp.get("ETag", ""))

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
