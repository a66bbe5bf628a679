"""The one conformance suite every ObjectStore backend must pass."""

from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelvc.errors import ObjectNotFound, UsageError
from modelvc.objects import ObjectStore


def key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=32).hexdigest()


def test_is_an_object_store(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_get_has_size(store: ObjectStore) -> None:
    k = key("a")
    assert not store.has(k)
    assert store.put(k, b"hello world") is True
    assert store.has(k)
    assert store.get(k) == b"hello world"
    assert store.size(k) == 11


def test_empty_object(store: ObjectStore) -> None:
    k = key("empty")
    assert store.put(k, b"")
    assert store.get(k) == b""
    assert store.size(k) == 0


def test_put_twice_keeps_first(store: ObjectStore) -> None:
    k = key("twice")
    assert store.put(k, b"first")
    assert store.put(k, b"second") is False
    assert store.put_file(k, io.BytesIO(b"third")) is False
    assert store.get(k) == b"first"


def test_replace(store: ObjectStore) -> None:
    k = key("r")
    store.put(k, b"old encoding")
    store.replace(k, b"new")
    assert store.get(k) == b"new"
    assert store.size(k) == 3


def test_has_many(store: ObjectStore) -> None:
    present = [key(f"p{i}") for i in range(40)]
    absent = [key(f"x{i}") for i in range(40)]
    for k in present:
        store.put(k, k.encode())
    assert store.has_many(present + absent) == set(present)
    assert store.has_many([]) == set()
    assert store.has_many(iter(absent[:1])) == set()


def test_list(store: ObjectStore) -> None:
    assert list(store.list()) == []
    data = {key(f"l{i}"): os.urandom(i) for i in range(30)}
    before = time.time()
    for k, v in data.items():
        store.put(k, v)
    infos = {info.key: info for info in store.list()}
    assert set(infos) == set(data)
    for k, v in data.items():
        assert infos[k].size == len(v)
        assert infos[k].mtime > before - 120  # server clocks may differ a little


def test_delete(store: ObjectStore) -> None:
    k = key("d")
    store.put(k, b"x")
    store.delete(k)
    assert not store.has(k)
    assert list(store.list()) == []
    store.delete(k)  # missing: not an error
    assert store.put(k, b"again")  # and it can come back
    assert store.get(k) == b"again"


def test_get_range(store: ObjectStore) -> None:
    k = key("range")
    data = bytes(range(256)) * 4
    store.put(k, data)
    assert store.get_range(k, 0, 10) == data[:10]
    assert store.get_range(k, 100, 50) == data[100:150]
    assert store.get_range(k, 1000, 100) == data[1000:]  # short read at the end
    assert store.get_range(k, 1024, 10) == b""  # exactly at the end
    assert store.get_range(k, 5000, 10) == b""  # past the end
    assert store.get_range(k, 3, 0) == b""
    with pytest.raises(UsageError):
        store.get_range(k, -1, 5)


def test_missing_object(store: ObjectStore) -> None:
    k = key("missing")
    for call in (store.get, store.size, store.touch):
        with pytest.raises(ObjectNotFound):
            call(k)
    with pytest.raises(ObjectNotFound):
        store.get_range(k, 0, 10)
    with pytest.raises(ObjectNotFound):
        store.get_range(k, 0, 0)


@pytest.mark.parametrize("bad", ["", "../x", "ABCDEF0123", "abc", "abcdef01/x", "ab/../cdef01"])
def test_bad_keys_refused(store: ObjectStore, bad: str) -> None:
    with pytest.raises(UsageError):
        store.put(bad, b"x")
    with pytest.raises(UsageError):
        store.get(bad)
    with pytest.raises(UsageError):
        store.has(bad)
    with pytest.raises(UsageError):
        store.has_many([bad])
    with pytest.raises(UsageError):
        store.delete(bad)


def test_touch_changes_mtime(store: ObjectStore, request: pytest.FixtureRequest) -> None:
    k = key("t")
    store.put(k, b"x")
    (old,) = [i.mtime for i in store.list()]
    # S3 LastModified has one-second resolution
    time.sleep(1.1 if "s3" in request.node.callspec.id else 0.02)
    store.touch(k)
    (new,) = [i.mtime for i in store.list()]
    assert new > old
    assert store.get(k) == b"x"


def test_put_file_small(store: ObjectStore) -> None:
    k = key("pf")
    src = io.BytesIO(b"skip-me" + os.urandom(3000))
    src.seek(7)  # streams from the current position
    expected = src.getvalue()[7:]
    assert store.put_file(k, src)
    assert store.get(k) == expected


def test_put_file_large(store: ObjectStore) -> None:
    """100 MiB + 1 byte: multipart on S3 (16 MiB parts), 1 MiB pieces on local."""
    k = key("big")
    block = os.urandom(1 << 20)
    data = block * 100 + b"!"
    assert store.put_file(k, io.BytesIO(data))
    assert store.size(k) == len(data)
    assert store.get_range(k, (100 << 20) - 3, 10) == block[-3:] + b"!"
    assert store.put_file(k, io.BytesIO(data)) is False
    assert hashlib.sha256(store.get(k)).digest() == hashlib.sha256(data).digest()


def test_concurrent_puts_same_key(store: ObjectStore) -> None:
    k = key("race")
    data = os.urandom(256 << 10)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.put(k, data), range(16)))
    assert any(results)
    assert store.get(k) == data
    assert [i.key for i in store.list()] == [k]


def test_put_above_multipart_threshold(store: ObjectStore) -> None:
    k = key("big-put")
    data = os.urandom(1 << 20) * 64 + b"?"  # 64 MiB + 1: multipart on S3
    assert store.put(k, data)
    assert store.put(k, b"other") is False
    assert store.size(k) == len(data)
    assert store.get_range(k, len(data) - 2, 5) == data[-2:]


def test_put_many(store: ObjectStore) -> None:
    from modelvc.objects.base import put_many

    items = [(key(f"m{i}"), os.urandom(i * 37)) for i in range(20)]
    assert store.put(items[3][0], items[3][1])  # already present: skipped
    big = (key("m-big"), os.urandom((1 << 20) + 1))  # over the pack member limit
    dup = (items[5][0], b"other bytes")  # listed twice: stored once, first wins
    result = put_many(store, [*items, big, dup])
    assert result == [i != 3 for i in range(20)] + [True, False]
    for k, v in [*items, big]:
        assert store.has(k)
        assert store.get(k) == v
        assert store.size(k) == len(v)
    assert store.get_range(items[7][0], 10, 20) == items[7][1][10:30]
    assert store.get_range(items[7][0], 1000, 5) == b""
    assert store.has_many([k for k, _ in items] + [key("none")]) == {k for k, _ in items}
    infos = {i.key: i for i in store.list()}
    assert set(infos) == {k for k, _ in [*items, big]}
    assert all(infos[k].size == len(v) for k, v in items)
    assert put_many(store, items) == [False] * len(items)
    assert put_many(store, []) == []
    assert store.put(items[0][0], b"again") is False


def test_put_many_then_delete_replace_touch(store: ObjectStore) -> None:
    from modelvc.objects.base import put_many

    items = [(key(f"d{i}"), os.urandom(100 + i)) for i in range(5)]
    put_many(store, items)
    store.delete(items[0][0])
    assert not store.has(items[0][0])
    with pytest.raises(ObjectNotFound):
        store.get(items[0][0])
    assert items[0][0] not in {i.key for i in store.list()}
    assert store.put(items[0][0], b"back")  # a deleted key can come back
    assert store.get(items[0][0]) == b"back"
    store.replace(items[1][0], b"re-encoded")
    assert store.get(items[1][0]) == b"re-encoded"
    assert store.size(items[1][0]) == len(b"re-encoded")
    store.touch(items[2][0])
    assert store.get(items[2][0]) == items[2][1]
    for k, _ in items:
        store.delete(k)
    assert list(store.list()) == []
    assert put_many(store, items) == [True] * 5  # all back, even in an identical pack
    assert {i.key for i in store.list()} == {k for k, _ in items}
    assert all(store.get(k) == v for k, v in items)
