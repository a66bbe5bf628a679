"""Requests a 100-tensor fine-tune costs on a real SeaweedFS: pushed into an S3-backed
registry, and committed directly, each from a fresh process (nothing cached in memory).

Before the pack window cache every delta reference cost a ranged GET at the receiver
(push: ~110 requests) and three at a committer (tail, footer, payload: ~313)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.objects import S3Store
from modelvc.objects.packs import PACKS, PackCache
from modelvc.registry import Registry
from modelvc.transfer import push

from .conftest import S3Server, make_s3_store

pytestmark = pytest.mark.s3


def count_requests(store: Any) -> list[str]:
    """Every request the store's client sends from now on: "METHOD path range"."""
    sent: list[str] = []

    def hook(request: Any, **_: Any) -> None:
        sent.append(f"{request.method} {request.url} {request.headers.get('Range')}")

    store._client.meta.events.register("before-send.s3", hook)
    return sent


def s3_url(s: S3Server) -> str:
    return (f"s3://{s.bucket}/{os.urandom(6).hex()}?endpoint={s.endpoint}"
            f"&access_key={s.access_key}&secret_key={s.secret_key}&region=us-east-1")


def base_weights(n: int = 100) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"l{i}.w": rng.standard_normal((64, 64)).astype(np.float32) for i in range(n)}


def checkpoint(folder: Path, base: dict[str, np.ndarray], seed: int, scale: float) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v + np.float32(scale) * rng.standard_normal(v.shape).astype(np.float32)
               for k, v in base.items()}, str(folder / "model.safetensors"))
    return folder


def pack_reads(sent: list[str]) -> Counter[str]:
    """GETs of pack bytes, per pack."""
    return Counter(s.split()[1].rsplit("/", 1)[1] for s in sent
                   if s.startswith("GET") and f"/{PACKS}" in s)


def test_push_of_a_fine_tune_is_a_handful_of_requests(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    base = base_weights()
    src = Registry.init(tmp_path / "src")
    dst = Registry.init(tmp_path / "dst", objects_url=s3_url(s3_server))
    try:
        src.commit(checkpoint(tmp_path / "c1", base, 1, 0.0), model="m")
        push(src, dst, ["m"])
        v2 = src.commit(checkpoint(tmp_path / "c2", base, 2, 1e-3), model="m")
        dst.close()
        dst = Registry.open(tmp_path / "dst")  # another process: nothing cached
        sent = count_requests(dst._store)
        result = push(src, dst, ["m"])
        print(f"\npush of a fine-tune: {len(sent)} S3 requests")
        assert result.versions == [v2.id]
        # The receiver verifies each of the 101 deltas against its reference in the
        # parent's pack: that pack is read once (its index, then its bytes), not per
        # reference.
        assert len(sent) <= 15, "\n".join(sent)
        assert all(n <= 2 for n in pack_reads(sent).values()), "\n".join(sent)
        assert dst.verify().ok
        assert dst.load("m@main")["l7.w"].tobytes() == src.load("m@main")["l7.w"].tobytes()
    finally:
        src.close()
        dst.close()


def test_commit_of_a_fine_tune_is_a_handful_of_requests(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    base = base_weights()
    with Registry.init(tmp_path / "repo", objects_url=s3_url(s3_server)) as reg:
        reg.commit(checkpoint(tmp_path / "c1", base, 1, 0.0), model="m")
    with Registry.open(tmp_path / "repo") as reg:  # a fresh process: no cached blocks
        assert isinstance(reg._store, S3Store)
        sent = count_requests(reg._store)
        reg.commit(checkpoint(tmp_path / "c2", base, 2, 1e-3), model="m")
        print(f"\ncommit of a fine-tune: {len(sent)} S3 requests")
        # Each tensor's reference needs its header and its payload: both come from the
        # parent's pack, fetched once.
        assert len(sent) <= 16, "\n".join(sent)
        assert all(n <= 2 for n in pack_reads(sent).values()), "\n".join(sent)
        tensors = [s.id for f in reg.manifest("m@v2").files for s in f.segments if s.tensor]
        assert len(tensors) == 100
        assert all(reg._io.header(t).ref is not None for t in tensors)  # deltas
        assert reg.verify().ok
        reg.checkout("m@v2", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == \
        (tmp_path / "c2" / "model.safetensors").read_bytes()


def test_pack_windows_read_once_and_bounded(s3_server: S3Server) -> None:
    a = make_s3_store(s3_server)
    assert isinstance(a, S3Store)
    items = [(f"{i:04x}" + "7" * 60, os.urandom(1000 + 37 * i)) for i in range(60)]
    assert all(a.put_many(items))
    b = S3Store(a.bucket, prefix=a.prefix, client=a._client)
    b._windows = PackCache(limit=3 * 8192, window=8192)  # small: boundaries and eviction
    sent = count_requests(b)
    for k, data in items:  # members straddle window boundaries; all read right
        assert b.get(k) == data
        assert b.get_range(k, 500, 100) == data[500:600]
        assert b.size(k) == len(data)
    (pack,) = pack_reads(sent)
    size = a._client.head_object(Bucket=a.bucket, Key=f"{a.prefix}{PACKS}{pack}")[
        "ContentLength"]
    windows = -(-size // 8192)
    # In order: each window once, plus the index read (the LRU never refetches a window
    # while reads move forward).
    assert pack_reads(sent)[pack] == windows + 1, "\n".join(sent)
    assert b._windows.cached_bytes() <= 3 * 8192

    # Many threads reading one cold window: one fetch.
    c = S3Store(a.bucket, prefix=a.prefix, client=a._client)
    sent = count_requests(c)
    c.has(items[0][0])  # learn the pack (LIST + index)
    before = len(sent)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def read(k: str, data: bytes) -> None:
        try:
            barrier.wait()
            assert c.get(k) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=items[i]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(sent) - before == 1, "\n".join(sent)  # the 4 MiB window holds them all
