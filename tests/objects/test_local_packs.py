"""The packing layer on a local disk: packs, loose objects written before packs, gc."""

from __future__ import annotations

import os
from pathlib import Path

from modelvc.objects import LocalStore
from modelvc.objects.packs import PACKS


def _key(i: int) -> str:
    return f"{i:064x}"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_many_writes_one_pack_and_reads_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "o", fsync=False)
    items = [(_key(i), bytes([i]) * (100 + i)) for i in range(50)]
    assert store.put_many(items) == [True] * 50
    files = _files(tmp_path / "o")
    assert len(files) == 1 and files[0].startswith(PACKS)  # 50 objects, one file
    fresh = LocalStore(tmp_path / "o")  # another process: finds them by listing packs/
    for k, data in items:
        assert fresh.get(k) == data and fresh.size(k) == len(data)
        assert fresh.get_range(k, 3, 5) == data[3:8]
    assert fresh.has_many([k for k, _ in items] + [_key(999)]) == {k for k, _ in items}
    assert store.put_many(items) == [False] * 50  # write-once, pack or not


def test_a_store_of_loose_objects_written_before_packs_reads_as_is(tmp_path: Path) -> None:
    """Registries written before local packs hold every object as root/ab/cdef...: no
    migration, they read, list and delete as before, beside new packs."""
    root = tmp_path / "o"
    old = {_key(i): os.urandom(64) for i in range(5)}
    for k, data in old.items():  # the pre-pack layout, written by hand
        (root / k[:2]).mkdir(parents=True, exist_ok=True)
        (root / k[:2] / k[2:]).write_bytes(data)
    store = LocalStore(root)
    new = [(_key(100 + i), os.urandom(32)) for i in range(3)]
    store.put_many(new)
    assert {o.key for o in store.list()} == set(old) | {k for k, _ in new}
    for k, data in [*old.items(), *new]:
        assert store.get(k) == data
    store.delete(_key(0))
    assert not store.has(_key(0)) and store.has(_key(1))


def test_gc_of_every_member_removes_the_pack_and_its_tombstones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "o")
    items = [(_key(i), b"x" * 10 + bytes([i])) for i in range(4)]
    store.put_many(items)
    store.delete(_key(0))
    assert not store.has(_key(0)) and store.get(_key(1)) == items[1][1]
    assert any(".dead." in f for f in _files(tmp_path / "o"))
    # Another process sees the deletion through the tombstone.
    assert {o.key for o in LocalStore(tmp_path / "o").list()} == {k for k, _ in items[1:]}
    for k, _ in items[1:]:
        store.delete(k)
    assert _files(tmp_path / "o") == []  # the pack and its tombstones are gone


def test_replace_shadows_the_packed_copy_in_another_process(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "o")
    store.put_many([(_key(1), b"old-encoding"), (_key(2), b"other")])
    store.replace(_key(1), b"new-encoding")
    assert LocalStore(tmp_path / "o").get(_key(1)) == b"new-encoding"
    assert LocalStore(tmp_path / "o").get(_key(2)) == b"other"


def test_a_pack_written_piece_by_piece_is_the_built_pack(tmp_path: Path) -> None:
    """A local disk writes a pack's pieces as they are (no joined copy of a commit's
    new bytes); the file is byte for byte the pack `build` makes, named by its id."""
    from modelvc.objects.packs import build, pack_id

    store = LocalStore(tmp_path / "o", fsync=False)
    items = [(_key(i), os.urandom(1000 + i)) for i in range(20)]
    assert store.put_many(items) == [True] * 20
    (written,) = (tmp_path / "o" / PACKS).iterdir()
    pid, body, _ = build(items)
    assert written.read_bytes() == body and pack_id(written.name) == pid
