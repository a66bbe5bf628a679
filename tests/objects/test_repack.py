"""gc's repack on every backend (local, memory, S3 on SeaweedFS): sparse packs are
rewritten, live objects survive and read everywhere (a stale reader too), dead ones
stay dead, and two repacks at once lose nothing."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from modelvc.errors import ObjectNotFound, UsageError
from modelvc.objects import ObjectStore
from modelvc.objects.packed import PackedStore
from modelvc.objects.packs import PACKS, pack_name


def key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=32).hexdigest()


def twin(store: ObjectStore) -> PackedStore:
    """Another process's view of the same files: its own pack map."""
    assert isinstance(store, PackedStore)
    return PackedStore(store.backend)


def packs_of(store: ObjectStore) -> list[str]:
    assert isinstance(store, PackedStore)
    return sorted(e.name[len(PACKS):] for e in store.backend.list(PACKS)
                  if (p := pack_name(e.name[len(PACKS):])) is not None and not p[1])


def fill(store: ObjectStore, n_packs: int = 6, per: int = 40) -> dict[str, bytes]:
    """n_packs packs of `per` members each; returns every object written."""
    items: dict[str, bytes] = {}
    for p in range(n_packs):
        batch = [(key(f"p{p}m{i}"), os.urandom(500 + 7 * i)) for i in range(per)]
        assert all(store.put_many(batch))  # type: ignore[attr-defined]
        items.update(batch)
    return items


def kill_some(store: ObjectStore, items: dict[str, bytes], sparse: range,
              n_packs: int = 6, per: int = 40) -> set[str]:
    """Delete 3 of 4 members of the packs in `sparse`, 1 of 10 of the others."""
    dead = {key(f"p{p}m{i}") for p in range(n_packs) for i in range(per)
            if (p in sparse and i % 4) or (p not in sparse and i % 10 == 0)}
    list(store.list())  # gc lists (refreshing the pack map) before it deletes
    for k in dead:
        store.delete(k)
    return dead


def check(store: ObjectStore, items: dict[str, bytes], dead: set[str]) -> None:
    live = {k: v for k, v in items.items() if k not in dead}
    assert {i.key for i in store.list()} == set(live)
    for k, v in live.items():
        assert store.get(k) == v
    for k in sorted(dead)[:10]:
        with pytest.raises(ObjectNotFound):
            store.get(k)
    assert store.has_many(items) == set(live)


def test_repack_rewrites_sparse_packs_only(store: ObjectStore) -> None:
    items = fill(store)
    dead = kill_some(store, items, range(4))
    before = packs_of(store)
    assert len(before) == 6
    report = twin(store).repack()  # another process: its map from a listing
    assert (report.packs_rewritten, report.packs_written) == (4, 1)
    assert report.bytes_copied == sum(len(items[key(f"p{p}m{i}")])
                                      for p in range(4) for i in range(0, 40, 4))
    after = packs_of(store)
    assert len(after) == 3 and len(set(after) & set(before)) == 2  # the dense two stay
    assert not any(".dead" in e.name and not e.name[len(PACKS):].startswith(tuple(after))
                   for e in store.backend.list(PACKS))  # type: ignore[attr-defined]
    check(twin(store), items, dead)
    check(store, items, dead)  # the writer's own (now stale) map recovers
    again = twin(store).repack()
    assert again.packs_rewritten == 0 and packs_of(store) == after


def test_a_reader_with_a_stale_map_sees_every_moved_object(store: ObjectStore) -> None:
    items = fill(store)
    dead = kill_some(store, items, range(6))
    reader = twin(store)
    live = {k: v for k, v in items.items() if k not in dead}
    assert reader.has_many(live) == set(live)  # its map now names the old packs
    twin(store).repack()
    for k, v in live.items():  # each old pack is gone: a miss, a refresh, the new pack
        assert reader.get(k) == v
        assert reader.get_range(k, 5, 10) == v[5:15]
    # A committer deduplicating against a moved object is right: it is still there.
    assert reader.put_many(list(live.items())) == [False] * len(live)


def test_dry_run_reports_and_changes_nothing(store: ObjectStore) -> None:
    items = fill(store)
    about_to_die = {key(f"p{p}m{i}") for p in range(2) for i in range(40) if i % 4}
    names = sorted(e.name for e in store.backend.list(""))  # type: ignore[attr-defined]
    dry = twin(store).repack(dry_run=True, dead=frozenset(about_to_die))
    assert (dry.packs_rewritten, dry.packs_written) == (2, 1)
    assert sorted(e.name for e in store.backend.list("")) == names  # type: ignore[attr-defined]
    assert twin(store).repack(dry_run=True).packs_rewritten == 0  # nothing is dead yet
    with pytest.raises(UsageError, match="threshold"):
        twin(store).repack(threshold=1.5)
    check(twin(store), items, set())


def test_two_repacks_at_once_lose_nothing(store: ObjectStore) -> None:
    """Two registries on one bucket, each collecting: they may duplicate members,
    never lose one."""
    items = fill(store, n_packs=8)
    dead = kill_some(store, items, range(8), n_packs=8)
    a, b = twin(store), twin(store)
    a._refresh()
    b._refresh()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(s: PackedStore) -> None:
        try:
            barrier.wait()
            s.repack()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    check(twin(store), items, dead)
    assert 1 <= len(packs_of(store)) <= 2
