"""The combined pack index on every backend: a store with many packs opens with one
read, stores written before it get one lazily, and a bad, stale or vanished combined
index costs only speed (the packs' own indexes are read)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

from modelvc.objects import ObjectStore
from modelvc.objects.backend import Backend, Entry
from modelvc.objects.packed import PackedStore
from modelvc.objects.packindex import COMBINE_AFTER, combined_body, is_index_name
from modelvc.objects.packs import PACKS, pack_name


def key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=32).hexdigest()


class Counted:
    """The real backend, counting the reads a refresh makes."""

    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self.caps = backend.caps
        self.reads: list[str] = []

    def get(self, name: str) -> bytes:
        self.reads.append(name)
        return self._b.get(name)

    def get_range(self, name: str, start: int, length: int) -> bytes | memoryview:
        self.reads.append(name)
        return self._b.get_range(name, start, length)

    def list(self, prefix: str) -> Iterator[Entry]:
        return self._b.list(prefix)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._b, name)


def view(store: ObjectStore) -> tuple[PackedStore, Counted]:
    """Another process's view of the store, with its reads counted."""
    assert isinstance(store, PackedStore)
    counted = Counted(store.backend)
    return PackedStore(counted), counted  # type: ignore[arg-type]


def fill(store: ObjectStore, n_packs: int) -> dict[str, bytes]:
    items: dict[str, bytes] = {}
    for p in range(n_packs):
        batch = [(key(f"p{p}m{i}"), os.urandom(100 + i)) for i in range(5)]
        assert all(store.put_many(batch))  # type: ignore[attr-defined]
        items.update(batch)
    return items


def combined(store: ObjectStore) -> list[str]:
    assert isinstance(store, PackedStore)
    return [e.name for e in store.backend.list(PACKS) if is_index_name(e.name[len(PACKS):])]


def test_many_packs_open_with_one_read_once_combined(store: ObjectStore) -> None:
    n = COMBINE_AFTER + 4
    items = fill(store, n)  # a store as written before combined indexes: none yet
    assert combined(store) == []
    first, reads = view(store)
    first._refresh()  # reads every pack index, then writes the combined one
    assert len(reads.reads) == n and len(combined(store)) == 1
    second, reads = view(store)
    for k, v in items.items():
        assert second.get(k) == v
    index_reads = [r for r in reads.reads if is_index_name(r[len(PACKS):])]
    assert len(index_reads) == 1 and len(second._packs.names()) == n
    # Packs written later are read one by one, beside the combined index.
    more = [(key(f"late{i}"), os.urandom(64)) for i in range(3)]
    store.put_many(more)  # type: ignore[attr-defined]
    third, reads = view(store)
    third._refresh()
    assert len(reads.reads) == 2  # the combined index and the new pack's index
    assert third.get(more[0][0]) == more[0][1]


def test_a_small_store_writes_no_combined_index(store: ObjectStore) -> None:
    fill(store, COMBINE_AFTER - 1)
    view(store)[0]._refresh()
    assert combined(store) == []


def test_stale_and_bad_combined_indexes_are_ignored(store: ObjectStore) -> None:
    assert isinstance(store, PackedStore)
    items = fill(store, COMBINE_AFTER + 1)
    view(store)[0]._refresh()
    [good] = combined(store)
    # A pack deleted after the index was written: its entry is ignored.
    gone = sorted(e.name[len(PACKS):] for e in store.backend.list(PACKS)
                  if (p := pack_name(e.name[len(PACKS):])) and not p[1])[0]
    gone_pack = store._packs.get(gone)
    assert gone_pack is not None
    gone_keys = set(gone_pack.members)
    store.backend.delete([PACKS + gone])
    # A combined index whose body does not match its name, and one with a bad body.
    name, body = combined_body([])
    store.backend.put(PACKS + name, body.replace(b"packs", b"pucks"))
    other = "index." + hashlib.sha256(b"x").hexdigest()
    store.backend.put(PACKS + other, b"not json")
    fresh, _ = view(store)
    live = {k: v for k, v in items.items() if k not in gone_keys}
    assert len(live) == len(items) - 5
    assert {i.key for i in fresh.list()} == set(live)
    for k, v in live.items():
        assert fresh.get(k) == v
    # The vanished combined index of a listing: the packs' own indexes are read.
    store.backend.delete([good])
    assert {i.key for i in view(store)[0].list()} == set(live)
