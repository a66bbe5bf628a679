"""Two garbage collections at once on one S3 prefix (SeaweedFS): tombstones of packed
members are never lost, live members never die, fully dead packs and their tombstones
go, and nothing left behind can kill the members of a pack written later.

Before tombstones were write-once objects (one `.dead` list per pack, read-merge-write)
the first test lost a collector's deletions in most runs: members came back."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc import layout
from modelvc.errors import ObjectNotFound
from modelvc.objects import S3Store
from modelvc.objects.packs import PACKS, TOMBSTONE_MERGE
from modelvc.registry import Registry

from .conftest import S3Server, make_s3_store

pytestmark = pytest.mark.s3


def key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=32).hexdigest()


def separate(store: S3Store, server: S3Server) -> S3Store:
    """Another process's store on the same prefix: its own client and pack map."""
    return S3Store(store.bucket, prefix=store.prefix, endpoint_url=server.endpoint,
                   region="us-east-1", access_key=server.access_key,
                   secret_key=server.secret_key)


def pack_names(store: S3Store) -> list[str]:
    out: list[str] = []
    for page in store._client.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=store.prefix + PACKS):
        out += [str(o["Key"])[len(store.prefix + PACKS):] for o in page.get("Contents", [])]
    return out


def run_together(*calls: Callable[[], object]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_two_collectors_delete_from_the_same_packs(s3_server: S3Server) -> None:
    writer = make_s3_store(s3_server)
    assert isinstance(writer, S3Store)
    packs = [[(key(f"p{p}m{i}"), os.urandom(50 + i)) for i in range(100)] for p in range(4)]
    for items in packs:
        assert all(writer.put_many(items))
    # Packs 0 and 1 die completely (both collectors delete all of pack 0, they split
    # pack 1); packs 2 and 3 keep 20 members each, with overlapping and disjoint
    # deletions. Each collector writes more than TOMBSTONE_MERGE tombstones per pack,
    # so both also merge while the other writes.
    a_keys = [k for k, _ in packs[0]] + [k for k, _ in packs[1][:50]]
    b_keys = [k for k, _ in packs[0]] + [k for k, _ in packs[1][50:]]
    for items in packs[2:]:
        ks = [k for k, _ in items]
        a_keys += ks[:60]
        b_keys += ks[20:80]  # 20..59 by both; 80..99 live
    assert len(b_keys) - 200 > 2 * TOMBSTONE_MERGE
    rnd = random.Random(7)
    rnd.shuffle(a_keys)
    rnd.shuffle(b_keys)
    a, b = separate(writer, s3_server), separate(writer, s3_server)
    late = separate(writer, s3_server)
    for s in (a, b, late):
        list(s.list())  # gc lists before it deletes

    run_together(lambda: [a.delete(k) for k in a_keys], lambda: [b.delete(k) for k in b_keys])

    dead = set(a_keys) | set(b_keys)
    live = {k: d for items in packs for k, d in items if k not in dead}
    assert len(live) == 40
    view = separate(writer, s3_server)
    assert {i.key for i in view.list()} == set(live)
    for s in (a, b):  # the collectors' own views agree
        s._refresh()
        assert {i.key for i in s.list()} == set(live)
    for k, data in live.items():
        assert view.get(k) == data
    for k in rnd.sample(sorted(dead), 20):
        with pytest.raises(ObjectNotFound):
            view.get(k)
    assert view.has_many(dead | set(live)) == set(live)
    names = pack_names(view)
    survivors = [n for n in names if ".dead" not in n]
    assert len(survivors) == 2, names  # packs 0 and 1 are gone, with their tombstones
    assert all(n.startswith(tuple(survivors)) for n in names), names
    # list() merged what the collectors left: one tombstone per surviving pack
    # covers its 80 dead members.
    assert len(names) <= 2 + 2 * (TOMBSTONE_MERGE + 1), names

    # A slow collector that still believes pack 0 exists writes a tombstone after
    # it was deleted. It is inert: a batch holding exactly pack 0's members again
    # (the same pack id) is readable everywhere.
    late.delete(packs[0][3][0])
    assert any(".dead." in n and not n.startswith(tuple(survivors)) for n in pack_names(view))
    writer.map_ttl = 0  # its map still holds those members: trust it no longer
    assert all(writer.put_many(packs[0]))
    for v in (separate(writer, s3_server), view, late):
        v._refresh()
        for k, data in packs[0]:
            assert v.get(k) == data
    # ... and list() removes it once it is older than stray_age.
    view.stray_age = 0
    list(view.list())
    assert all(n.startswith(tuple(survivors)) or ".dead" not in n for n in pack_names(view))
    assert {i.key for i in view.list()} == set(live) | {k for k, _ in packs[0]}


def test_two_gc_runs_at_once(s3_server: S3Server, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two registry folders (two gc locks) on one metadata database and one S3 prefix,
    both running `gc --apply` at the same moment."""
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    s = s3_server
    url = (f"s3://{s.bucket}/{os.urandom(6).hex()}?endpoint={s.endpoint}"
           f"&access_key={s.access_key}&secret_key={s.secret_key}&region=us-east-1")
    rng = np.random.default_rng(0)
    weights = {f"t{i}": rng.standard_normal((24, 24)).astype(np.float32) for i in range(150)}
    model = tmp_path / "m.safetensors"
    one = Registry.init(tmp_path / "one", objects_url=url)
    layout.create(tmp_path / "two", meta=one._layout.meta_url, objects=url)
    two = Registry.open(tmp_path / "two")
    try:
        for n, changed in enumerate([range(0), range(0, 100), range(50, 150),
                                     range(0, 150, 3), range(25, 75)]):
            for i in changed:
                weights[f"t{i}"] = rng.standard_normal((24, 24)).astype(np.float32)
            save_file(weights, str(model))
            one.commit(model, model="m", message=f"c{n}")
        for v in ("m@v2", "m@v3", "m@v4"):
            one.delete(v)
        before = {i.key for i in one._store.list()}
        live = one._meta.live_object_ids()
        assert len(before - live) > 150  # garbage, most of it packed
        reports = []
        run_together(lambda: reports.append(one.gc(dry_run=False, grace_seconds=0)),
                     lambda: reports.append(two.gc(dry_run=False, grace_seconds=0)))
        assert sum(len(r.removable) for r in reports) >= len(before - live)
        for reg in (one, two):
            assert {i.key for i in reg._store.list()} == live  # nothing came back
            assert reg.gc(dry_run=True, grace_seconds=0).removable == []
            assert reg.verify().ok
        fresh = Registry.open(tmp_path / "one")
        try:
            assert {i.key for i in fresh._store.list()} == live
            fresh.checkout("m@v1", tmp_path / "v1")
            fresh.checkout("m@v5", tmp_path / "v5")
        finally:
            fresh.close()
        save_file(weights, str(tmp_path / "expect.safetensors"))
        assert (tmp_path / "v5" / "m.safetensors").read_bytes() == \
            (tmp_path / "expect.safetensors").read_bytes()
    finally:
        one.close()
        two.close()
