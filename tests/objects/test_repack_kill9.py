"""kill -9 of a repack (and of a gc that repacks) at random points, on a local disk and
on S3 (SeaweedFS): no live object is lost, no dead one comes back, the store reads
from a fresh process, a later repack finishes the job, and a registry verifies.

The child repacks with small output packs (PACK_TARGET 256 KiB), so one run is many
write-then-delete steps and the kills land between them as well as inside them.
Delays are drawn (seeded) over the measured length of an uninterrupted run; the first
kill lands between a new pack's write and the old packs' deletion on purpose, so the
duplicate-dropping path runs whatever the draw."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.objects import LocalStore, ObjectStore
from modelvc.objects.packed import PackedStore
from modelvc.registry import Registry
from tests.faults import zygote
from tests.faults.zygote import Forked

from .conftest import S3Server, make_s3_store

SEED = 20261202
CHILD = r"""
import sys, time
import modelvc.objects.repack as rp
rp.PACK_TARGET = 256 << 10
kind, where = sys.argv[1], sys.argv[2]
if kind == "local":
    from modelvc.objects import LocalStore
    target = LocalStore(where)
elif kind == "s3":
    from modelvc.objects import S3Store
    bucket, prefix, endpoint, ak, sk = where.split("|")
    target = S3Store(bucket, prefix=prefix, endpoint_url=endpoint, region="us-east-1",
                     access_key=ak, secret_key=sk)
else:
    from modelvc.registry import Registry
    target = Registry.open(where)
    target.verify()  # imports and opens everything the gc needs before "ready"
if kind != "registry":
    target._refresh()
if len(sys.argv) > 3:  # stop for the kill between the first new pack and any delete
    def pause(name):
        print("between", flush=True)
        time.sleep(600)
    target._remove_pack = pause
print("ready", flush=True)
t = time.perf_counter()
if kind == "registry":
    target.gc(dry_run=False, grace_seconds=0)
else:
    target.repack()
print(time.perf_counter() - t, flush=True)
"""


def key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=32).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _zygote_per_module() -> Iterator[None]:
    """The children's zygote stops with the module, so their CPU counts with it."""
    yield
    zygote.stop()


def spawn(kind: str, where: str, *pause: str) -> Forked:
    """`python -c CHILD KIND WHERE [pause]`, forked from the fault tests' zygote
    (tests/faults/zygote.py): a process of its own, killed with a real SIGKILL, without
    a Python start-up and the imports each time."""
    p = zygote.spawn([kind, where, *pause], dict(os.environ), code=CHILD)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise AssertionError(f"child did not get ready: {line!r} {p.stderr.read()}")  # type: ignore[union-attr]
    return p


def run_whole(kind: str, where: str) -> float:
    """An uninterrupted run; how long its repack took (after 'ready')."""
    p = spawn(kind, where)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return float(out.strip())


def kill_after(kind: str, where: str, delay: float) -> None:
    p = spawn(kind, where)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)


def fill(store: ObjectStore, n_packs: int = 24, per: int = 30) -> tuple[dict[str, bytes], set[str]]:
    """Packs of `per` members; 3 of 4 members of most packs deleted (sparse)."""
    items: dict[str, bytes] = {}
    rng = random.Random(SEED)
    for p in range(n_packs):
        batch = [(key(f"p{p}m{i}"), rng.randbytes(4000 + 97 * i)) for i in range(per)]
        assert all(store.put_many(batch))  # type: ignore[attr-defined]
        items.update(batch)
    dead = {key(f"p{p}m{i}") for p in range(n_packs) for i in range(per)
            if i % 4 and p % 6}
    list(store.list())
    for k in dead:
        store.delete(k)
    return items, dead


def check(store: ObjectStore, items: dict[str, bytes], dead: set[str]) -> None:
    live = {k: v for k, v in items.items() if k not in dead}
    assert {i.key for i in store.list()} == set(live)  # nothing lost, nothing back
    for k, v in live.items():
        assert store.get(k) == v


def one_copy_each(store: PackedStore, items: dict[str, bytes], dead: set[str]) -> None:
    """After a finished repack no live member is held twice: the packs a killed run
    wrote name the packs they replace, so the next run drops those copies."""
    store._refresh()
    held = {k: len(store._packs.holding(k)) for k in items if k not in dead}
    assert set(held.values()) == {1}, sorted(held.values())[-5:]


def n_packs(store: PackedStore) -> int:
    store._refresh()
    return len(store._packs.names())


def test_kill9_during_repack_on_a_local_disk(tmp_path: Path) -> None:
    template = tmp_path / "template"
    items, dead = fill(LocalStore(template))
    before = n_packs(LocalStore(template))
    shutil.copytree(template, tmp_path / "whole")
    length = run_whole("local", str(tmp_path / "whole"))
    check(LocalStore(tmp_path / "whole"), items, dead)
    one_copy_each(LocalStore(tmp_path / "whole"), items, dead)
    assert n_packs(LocalStore(tmp_path / "whole")) < before
    rng = random.Random(SEED)
    kills = int(os.environ.get("REPACK_KILLS", "6"))
    for i in range(kills):
        root = tmp_path / f"k{i}"
        shutil.copytree(template, root)
        if i == 0:
            p = spawn("local", str(root), "pause")
            assert p.stdout is not None and p.stdout.readline().strip() == "between"
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            assert n_packs(LocalStore(root)) == before + 1  # the old ones and a new one
        else:
            kill_after("local", str(root), rng.uniform(0, 1.2 * length))
        check(LocalStore(root), items, dead)  # a fresh process, right after the kill
        finish = LocalStore(root)
        finish.repack()
        finish.cleanup_temp(0)
        check(LocalStore(root), items, dead)
        one_copy_each(LocalStore(root), items, dead)
        # Done: no sparse pack is left (duplicates of a killed run may stay).
        assert LocalStore(root).repack(dry_run=True).packs_rewritten == 0
        shutil.rmtree(root)


@pytest.mark.s3
def test_kill9_during_repack_on_s3(s3_server: S3Server) -> None:
    s = s3_server
    rng = random.Random(SEED + 1)
    length = 0.0
    for i in range(int(os.environ.get("REPACK_KILLS_S3", "2")) + 1):
        store = make_s3_store(s)
        items, dead = fill(store, n_packs=12)
        where = "|".join([s.bucket, store.prefix.rstrip("/"), s.endpoint,  # type: ignore[attr-defined]
                          s.access_key, s.secret_key])
        if i == 0:
            length = run_whole("s3", where)
        else:
            kill_after("s3", where, rng.uniform(0, 1.2 * length))
        check(make_fresh(store), items, dead)
        fresh = make_fresh(store)
        fresh.repack()
        check(make_fresh(store), items, dead)
        one_copy_each(make_fresh(store), items, dead)
        assert make_fresh(store).repack(dry_run=True).packs_rewritten == 0


def make_fresh(store: ObjectStore) -> PackedStore:
    assert isinstance(store, PackedStore)
    return PackedStore(store.backend)


def test_kill9_during_gc_repack_leaves_a_registry_that_verifies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    rng = np.random.default_rng(SEED)
    weights = {f"t{i}": rng.standard_normal((48, 48)).astype(np.float32) for i in range(80)}
    model = tmp_path / "m.safetensors"
    saved: dict[str, bytes] = {}
    template = tmp_path / "template"
    reg = Registry.init(template)
    try:
        for n, changed in enumerate([range(80), range(60), range(60), range(70, 80)]):
            for i in changed:
                weights[f"t{i}"] = rng.standard_normal((48, 48)).astype(np.float32)
            save_file(weights, str(model))
            reg.commit(model, model="m", message=f"c{n}")
            saved[f"m@v{n + 1}"] = model.read_bytes()
        reg.delete("m@v1")
        reg.delete("m@v2")
    finally:
        reg.close()
    shutil.copytree(template, tmp_path / "whole")
    length = run_whole("registry", str(tmp_path / "whole"))
    pick = random.Random(SEED + 2)
    for i in range(int(os.environ.get("REPACK_KILLS", "6")) // 2):
        root = tmp_path / f"k{i}"
        shutil.copytree(template, root)
        kill_after("registry", str(root), pick.uniform(0, 1.2 * length))
        for step in ("after the kill", "after a full gc"):
            r = Registry.open(root)
            try:
                assert r.verify().ok, step
                for v in ("m@v3", "m@v4"):
                    out = tmp_path / f"out{i}" / v.replace("@", "-")
                    shutil.rmtree(out, ignore_errors=True)
                    r.checkout(v, out)
                    assert (out / "m.safetensors").read_bytes() == saved[v], step
                if step == "after the kill":
                    r.gc(dry_run=False, grace_seconds=0)
            finally:
                r.close()
        shutil.rmtree(root)
