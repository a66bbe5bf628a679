"""The pack map of objects/packed.py while a refresh is under way.

A refresh lists packs/ and then drops from the map every known pack the listing did not
show (deleted by gc elsewhere). A pack this process wrote after the listing passed is
not in it either: it used to be dropped too, so the process forgot its own fresh pack
until the next listing. Then `flush` (a store with deferred fsync) took its members
for loose objects and failed to sync files that do not exist, `delete` wrote no
tombstone for the pack (gc left the object live), and `has_many` answered "absent"
(the objects were written again). Deterministic: the listing itself writes the pack.

A refresh also put a new pack in the map before its tombstones: a reader in another
thread meanwhile found members that `replace` had retired and read their old bytes (a
fresh registry's checkout read a damaged object's undamaged packed copy while verify read
the loose one: the property test of tests/test_storage.py failed now and then). The
reader is run from the tombstone's read, where such a thread could fall.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from modelvc.objects import LocalStore
from modelvc.objects.backend import Entry
from modelvc.objects.local import LocalBackend
from modelvc.objects.packs import PACKS

B = TypeVar("B", bound=LocalBackend)


def _key(i: int) -> str:
    return f"{i:064x}"


class _ListingHook(LocalBackend):
    """A local backend that runs `during` once, after listing packs/ and before the
    caller sees the entries (where another thread's pack write can fall)."""

    during: Callable[[], None] | None = None

    def list(self, prefix: str) -> Iterator[Entry]:
        entries = list(super().list(prefix))
        hook, self.during = self.during, None
        if prefix == PACKS and hook is not None:
            hook()
        yield from entries


class _TombstoneHook(LocalBackend):
    """A local backend that runs `during` once, before the first tombstone is read."""

    during: Callable[[], None] | None = None

    def get(self, name: str) -> bytes:
        if ".dead" in name and self.during is not None:
            hook, self.during = self.during, None
            hook()
        return super().get(name)


def _store(root: Path, kind: type[B]) -> tuple[LocalStore, B]:
    store = LocalStore(root, fsync=False)
    backend = kind(root, fsync=False)
    store.backend = store.local = backend
    return store, backend


def test_a_pack_written_during_a_refresh_stays_in_the_map(tmp_path: Path) -> None:
    store, backend = _store(tmp_path / "o", _ListingHook)
    store.put_many([(_key(1), b"a" * 100), (_key(2), b"b" * 100)])  # a pack listed
    mine = [(_key(i), bytes([i]) * 200) for i in range(10, 20)]
    # put_many's write, landing after the listing passed (its has_many came before).
    backend.during = lambda: store._write_pack(mine)
    store._refresh()
    assert backend.during is None
    # Known without another listing: located in the map, flushed as packed (no loose
    # file to sync), tombstoned on delete.
    assert all(store._packs.locate(k) is not None for k, _ in mine)
    store.flush([k for k, _ in mine])
    store.delete(mine[0][0])
    fresh = LocalStore(tmp_path / "o")
    assert not fresh.has(mine[0][0])
    assert all(fresh.get(k) == data for k, data in mine[1:])


def test_a_new_pack_enters_the_map_with_its_tombstones(tmp_path: Path) -> None:
    writer = LocalStore(tmp_path / "o")
    writer.put_many([(_key(1), b"old-encoding"), (_key(2), b"other")])  # one pack
    writer.replace(_key(1), b"new-encoding")  # loose now, the packed copy tombstoned
    store, backend = _store(tmp_path / "o", _TombstoneHook)
    seen: list[bytes] = []
    backend.during = lambda: seen.append(store.get(_key(1)))  # a reader, mid-refresh
    assert store.get(_key(2)) == b"other"  # packed only: the miss refreshes the map
    assert backend.during is None
    assert seen == [b"new-encoding"]  # was the retired b"old-encoding"
    assert store.get(_key(1)) == b"new-encoding"
    assert [p.dead for p in store._packs.packs()] == [{_key(1)}]
