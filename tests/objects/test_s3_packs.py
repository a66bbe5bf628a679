"""S3Store packs on a real SeaweedFS: other instances' views, tombstones, request counts."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.errors import ObjectNotFound
from modelvc.objects import S3Store
from modelvc.objects.base import put_many
from modelvc.objects.packs import PACKS, TAIL_READ
from modelvc.registry import Registry

from .conftest import S3Server, make_s3_store

pytestmark = pytest.mark.s3


def key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=32).hexdigest()


@pytest.fixture
def pair(s3_server: S3Server) -> Iterator[tuple[S3Store, S3Store]]:
    """Two instances on one prefix: a writer, and another process's fresh view."""
    a = make_s3_store(s3_server)
    assert isinstance(a, S3Store)
    b = S3Store(a.bucket, prefix=a.prefix, client=a._client)
    yield a, b
    a.close()


def another(store: S3Store) -> S3Store:
    return S3Store(store.bucket, prefix=store.prefix, client=store._client)


def names(store: S3Store) -> list[str]:
    resp = store._client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    return [str(o["Key"])[len(store.prefix):] for o in resp.get("Contents", [])]


def count_requests(store: S3Store) -> list[str]:
    """Every HTTP request the store's client sends from now on ("METHOD url")."""
    sent: list[str] = []

    def hook(request: Any, **_: Any) -> None:
        sent.append(f"{request.method} {request.url}")

    store._client.meta.events.register("before-send.s3", hook)
    return sent


def test_packed_objects_seen_by_another_instance(pair: tuple[S3Store, S3Store]) -> None:
    a, b = pair
    # 2000 members: the index outgrows the first tail read, so the second GET path runs.
    items = [(key(f"o{i}"), os.urandom(i % 300)) for i in range(2000)]
    sent = count_requests(a)
    assert all(a.put_many(items))
    assert sum(s.startswith("PUT") for s in sent) == 1  # one pack
    (pack,) = [n for n in names(a) if n.startswith(PACKS)]
    assert a._client.head_object(Bucket=a.bucket, Key=a.prefix + pack)["ContentLength"] > (
        sum(len(d) for _, d in items) + TAIL_READ - 1000)
    for k, data in items[::97]:
        assert b.get(k) == data
        assert b.size(k) == len(data)
        assert b.get_range(k, 5, 7) == data[5:12]
        assert b.has(k)
    assert b.has_many([k for k, _ in items] + [key("absent")]) == {k for k, _ in items}
    assert {i.key: i.size for i in b.list()} == {k: len(d) for k, d in items}
    assert not b.has(key("absent"))


def test_mixed_individual_and_packed(pair: tuple[S3Store, S3Store]) -> None:
    a, b = pair
    alone = [(key(f"a{i}"), os.urandom(50)) for i in range(5)]
    packed = [(key(f"p{i}"), os.urandom(50)) for i in range(5)]
    for k, d in alone:
        a.put(k, d)
    assert put_many(a, alone + packed) == [False] * 5 + [True] * 5  # present: skipped
    assert b.has_many(k for k, _ in alone + packed) == {k for k, _ in alone + packed}
    assert sorted(i.key for i in b.list()) == sorted(k for k, _ in alone + packed)
    assert b.put(packed[0][0], b"x") is False  # write-once holds for packed keys too


def test_replace_overrides_packed_member(pair: tuple[S3Store, S3Store]) -> None:
    a, b = pair
    items = [(key(f"r{i}"), os.urandom(100)) for i in range(3)]
    a.put_many(items)
    k = items[1][0]
    b.replace(k, b"new encoding")  # b never saw the pack: it finds it to tombstone it
    for view in (b, another(a)):
        assert view.get(k) == b"new encoding"
        assert view.get_range(k, 4, 100) == b"encoding"
        assert view.size(k) == len(b"new encoding")
        assert [i.key for i in view.list()].count(k) == 1
        assert view.get(items[0][0]) == items[0][1]


def test_tombstones_survive_a_new_instance(pair: tuple[S3Store, S3Store]) -> None:
    a, b = pair
    items = [(key(f"t{i}"), os.urandom(100)) for i in range(4)]
    a.put_many(items)
    a.delete(items[0][0])
    assert any(".dead." in n for n in names(a))
    for view in (a, b, another(a)):
        assert not view.has(items[0][0])
        with pytest.raises(ObjectNotFound):
            view.get(items[0][0])
        with pytest.raises(ObjectNotFound):
            view.touch(items[0][0])
        assert {i.key for i in view.list()} == {k for k, _ in items[1:]}
        assert view.has_many(k for k, _ in items) == {k for k, _ in items[1:]}


def test_pack_deleted_when_all_members_die(pair: tuple[S3Store, S3Store]) -> None:
    a, b = pair
    items = [(key(f"g{i}"), os.urandom(100)) for i in range(3)]
    a.put_many(items)
    list(b.list())  # gc lists (and so learns the packs) before it deletes
    for k, _ in items:
        b.delete(k)
    assert names(a) == []
    assert list(another(a).list()) == []
    with pytest.raises(ObjectNotFound):
        a.get(items[0][0])  # the pack is gone: a drops it from its map
    a.map_ttl = 0  # a "present" answer from the map is only trusted this long
    assert not a.has(items[1][0])


def test_touch_refreshes_the_pack(pair: tuple[S3Store, S3Store]) -> None:
    a, b = pair
    items = [(key(f"u{i}"), os.urandom(10)) for i in range(2)]
    a.put_many(items)
    (pack,) = names(a)
    meta = a._client.head_object(Bucket=a.bucket, Key=a.prefix + pack).get("Metadata", {})
    assert "touched" not in meta
    b.touch(items[0][0])
    meta = a._client.head_object(Bucket=a.bucket, Key=a.prefix + pack).get("Metadata", {})
    assert "touched" in meta  # copied onto itself: LastModified is now
    assert b.get(items[1][0]) == items[1][1]


def small_model(path: Path, seed: int, n: int = 100) -> None:
    rng = np.random.default_rng(seed)
    save_file({f"layer.{i}.weight": rng.standard_normal((32, 32)).astype(np.float32)
               for i in range(n)}, str(path))


def test_commit_of_small_tensors_is_a_handful_of_requests(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    s = s3_server
    url = (f"s3://{s.bucket}/{os.urandom(6).hex()}?endpoint={s.endpoint}"
           f"&access_key={s.access_key}&secret_key={s.secret_key}&region=us-east-1")
    model = tmp_path / "m.safetensors"
    with Registry.init(tmp_path / "repo", objects_url=url) as reg:
        assert isinstance(reg._store, S3Store)
        sent = count_requests(reg._store)
        small_model(model, 0)
        reg.commit(model, model="m")
        first = len(sent)
        sent.clear()
        small_model(model, 1)  # every tensor changes: 100 new objects again
        reg.commit(model, model="m")
        second = len(sent)
        assert reg.verify().ok
        reg.checkout("m@v1", tmp_path / "out1")
        reg.checkout("m@v2", tmp_path / "out2")
    # 101 objects each (100 tensors and the safetensors header) + the manifest: was
    # a HEAD and a PUT per object (> 200 requests).
    print("requests:", first, second)
    assert first <= 10, sent
    assert second <= 10, sent
    small_model(model, 1)
    assert (tmp_path / "out2" / "m.safetensors").read_bytes() == model.read_bytes()


def test_packs_written_before_nonces_still_read(pair: tuple[S3Store, S3Store]) -> None:
    """`packs/<id>` with a mutable `packs/<id>.dead` list (the first pack format)."""
    from modelvc.objects.packs import build

    a, b = pair
    items = [(key(f"old{i}"), os.urandom(80)) for i in range(4)]
    pid, body, _ = build(items)
    client = a._client
    client.put_object(Bucket=a.bucket, Key=f"{a.prefix}{PACKS}{pid}", Body=body)
    client.put_object(Bucket=a.bucket, Key=f"{a.prefix}{PACKS}{pid}.dead",
                      Body=json.dumps([items[0][0]]).encode())
    assert b.get(items[1][0]) == items[1][1]
    assert not b.has(items[0][0])
    assert {i.key for i in b.list()} == {k for k, _ in items[1:]}
    b.delete(items[1][0])  # a tombstone of the new kind on an old pack
    assert {i.key for i in another(a).list()} == {k for k, _ in items[2:]}
    for k, _ in items[2:]:
        b.delete(k)
    assert names(a) == []  # the pack and both kinds of tombstone are gone
