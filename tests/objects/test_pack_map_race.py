"""The pack map of objects/packed.py while this process writes a pack during a refresh.

A refresh lists packs/ and then drops from the map every known pack the listing did not
show (deleted by gc elsewhere). A pack this process wrote after the listing passed is
not in it either: it used to be dropped too, so the process forgot its own fresh pack
until the next listing. Then `flush` (a store with deferred fsync) took its members
for loose objects and failed to sync files that do not exist, `delete` wrote no
tombstone for the pack (gc left the object live), and `has_many` answered "absent"
(the objects were written again). Deterministic: the listing itself writes the pack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from modelvc.objects import LocalStore
from modelvc.objects.backend import Entry
from modelvc.objects.local import LocalBackend
from modelvc.objects.packs import PACKS


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


def _store(root: Path) -> tuple[LocalStore, _ListingHook]:
    store = LocalStore(root, fsync=False)
    backend = _ListingHook(root, fsync=False)
    store.backend = store.local = backend
    return store, backend


def test_a_pack_written_during_a_refresh_stays_in_the_map(tmp_path: Path) -> None:
    store, backend = _store(tmp_path / "o")
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
