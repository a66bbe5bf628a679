"""PendingStore on a local disk: held objects written as packs, early ones on a writer
thread beside the caller (objects/pending.py), durable once `flush` returns."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from modelvc.errors import StorageError
from modelvc.objects import LocalStore
from modelvc.objects.packs import PACKS
from modelvc.objects.pending import PendingStore

WAIT = 60.0  # seconds a writer thread may take on a busy machine


def _key(i: int) -> str:
    return f"{i:064x}"


def _packs(root: Path) -> list[Path]:
    return sorted((root / PACKS).glob("*")) if (root / PACKS).exists() else []


class GatedStore(LocalStore):
    """A real LocalStore whose pack writes wait for the test to open a gate, and whose
    first N writes fail (a disk that filled, then had room again)."""

    def __init__(self, root: Path, *, fail: int = 0) -> None:
        super().__init__(root, fsync=False)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def put_many(self, items: list[tuple[str, bytes]]) -> list[bool]:
        self.entered.set()
        assert self.gate.wait(WAIT)
        if self.fail:
            self.fail -= 1
            raise StorageError("no space left (injected)")
        return super().put_many(items)


def test_early_objects_are_written_beside_the_caller_and_read_meanwhile(tmp_path: Path) -> None:
    root = tmp_path / "o"
    store = GatedStore(root)
    pending = PendingStore(store, max_item=1 << 20, early=4000)
    items = [(_key(i), os.urandom(1000 + i)) for i in range(10)]
    for k, data in items[:5]:  # the fifth crosses `early`: handed to the writer
        assert pending.put(k, data) is True
    assert store.entered.wait(WAIT)
    # While the writer holds them: still read, still known, never "new" again.
    for k, data in items[:5]:
        assert pending.get(k) == data and pending.size(k) == len(data)
        assert pending.get_range(k, 2, 3) == data[2:5]
        assert pending.holds(k) and pending.has(k)
        assert pending.put(k, data) is False
    assert pending.has_many([k for k, _ in items[:5]] + [_key(99)]) == {k for k, _ in items[:5]}
    for k, data in items[5:9]:  # the caller goes on while the write is under way
        assert pending.put(k, data) is True
    store.gate.set()
    deadline = time.monotonic() + WAIT
    while not _packs(root) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_packs(root)) == 1  # the early pack, before any flush
    assert pending.put(*items[9]) is True
    assert pending.flush() == set()
    assert pending.written == {k for k, _ in items}
    fresh = LocalStore(root)  # another process sees every object
    for k, data in items:
        assert fresh.get(k) == data


def test_a_failed_early_write_is_written_again_by_flush(tmp_path: Path) -> None:
    root = tmp_path / "o"
    store = GatedStore(root, fail=1)
    pending = PendingStore(store, max_item=1 << 20, early=2000)
    items = [(_key(i), os.urandom(1500)) for i in range(3)]
    for k, data in items[:2]:
        pending.put(k, data)
    assert store.entered.wait(WAIT)
    store.gate.set()  # the writer's attempt fails: its objects go back to the held ones
    pending.put(*items[2])
    assert pending.flush() == set()
    assert pending.written == {k for k, _ in items}
    fresh = LocalStore(root)
    for k, data in items:
        assert fresh.get(k) == data


def test_flush_raises_what_the_store_raises_when_writes_keep_failing(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "o", fail=2)
    pending = PendingStore(store, max_item=1 << 20, early=2000)
    items = [(_key(i), os.urandom(1500)) for i in range(2)]
    for k, data in items:
        pending.put(k, data)
    store.gate.set()
    with pytest.raises(StorageError, match="no space left"):
        pending.flush()
    for k, data in items:  # nothing lost: still held, and read from memory
        assert pending.get(k) == data
    assert pending.flush() == set()  # room again
    fresh = LocalStore(tmp_path / "o")
    for k, data in items:
        assert fresh.get(k) == data


def test_without_early_nothing_is_written_before_flush(tmp_path: Path) -> None:
    root = tmp_path / "o"
    pending = PendingStore(LocalStore(root, fsync=False), max_item=1 << 20)
    for i in range(10):
        pending.put(_key(i), os.urandom(1000))
    assert _packs(root) == []
    pending.flush()
    assert len(_packs(root)) == 1


def test_a_registry_commit_writes_early_packs_and_checks_out_exact(tmp_path: Path) -> None:
    """LocalStore.pack_early: a commit whose small objects pass it stores several packs,
    every one before the version is recorded; the version reads back bit for bit."""
    import numpy as np
    from safetensors.numpy import save_file

    from modelvc.registry import Registry

    assert LocalStore.pack_early is not None
    rng = np.random.default_rng(0)
    n = LocalStore.pack_early // (2 << 20) + 3  # tensors of ~2 MB: a few packs' worth
    tensors = {f"t{i}": rng.standard_normal(500_000).astype(np.float32) for i in range(n)}
    src = tmp_path / "m.safetensors"
    save_file(tensors, str(src))
    reg = Registry.init(tmp_path / "reg")
    v = reg.commit(src, model="m", message="x")
    packs = _packs(tmp_path / "reg" / ".modelvc" / "objects")
    assert len(packs) >= 2
    out = tmp_path / "out.safetensors"
    reg.checkout(f"m@v{v.number}", out)
    assert out.read_bytes() == src.read_bytes()
    reg.close()
