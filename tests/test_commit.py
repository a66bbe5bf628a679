"""commit: a file's sha256 from its segments' bytes as they are read (OrderedHash), the
same digest as hashing the file apart, in whatever order the reading threads finish."""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc import commit
from modelvc.commit import OrderedHash
from modelvc.formats import FilePlan, Segment, plan_file
from modelvc.registry import Registry


def pieces(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    bounds = [0, *cuts, len(data)]
    return [(a, data[a:b]) for a, b in itertools.pairwise(bounds)]


def add_all(h: OrderedHash, todo: list[tuple[int, bytes]]) -> None:
    for off, piece in todo:
        h.add(off, piece)


def test_pieces_in_any_order_and_from_threads_hash_as_the_whole() -> None:
    rng = random.Random(0)
    data = rng.randbytes(1 << 20)
    want = hashlib.sha256(data).hexdigest()
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    for _ in range(5):
        h = OrderedHash(len(data))
        todo = pieces(data, cuts)
        rng.shuffle(todo)
        threads = [threading.Thread(target=add_all, args=(h, todo[i::4])) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert h.digest() == want


def test_a_piece_read_again_counts_once_and_a_missing_one_leaves_no_digest() -> None:
    data = bytes(range(256)) * 64
    h = OrderedHash(len(data))
    parts = pieces(data, [100, 5000, 9000])
    for off, p in [parts[1], parts[0], parts[0], parts[1], parts[3]]:
        h.add(off, p)
    assert h.digest() is None  # [5000, 9000) was never read
    h.add(*parts[2])
    assert h.digest() == hashlib.sha256(data).hexdigest()


def test_only_plans_read_whole_segment_by_segment_are_hashed_on_the_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tiled = FilePlan("binary", 30, (Segment(0, 10, "bytes"), Segment(10, 20, "bytes")))
    gap = FilePlan("binary", 30, (Segment(0, 10, "bytes"), Segment(12, 18, "bytes")))
    assert OrderedHash.of(tiled) is not None and OrderedHash.of(gap) is None
    monkeypatch.setattr(commit, "STREAM_BYTES", 15)  # the 20-byte segment would stream
    assert OrderedHash.of(tiled) is None


@pytest.mark.parametrize("stream", [False, True])
def test_committed_files_record_their_sha256(reg: Registry, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             stream: bool) -> None:
    """Hashed from the segments (many tensors) or apart (a tensor streamed in blocks):
    the manifest holds the file's sha256 either way, and a delta commit's too."""
    if stream:
        monkeypatch.setattr(commit, "STREAM_BYTES", 1 << 16)
    rng = np.random.default_rng(1)
    ts = {f"t{i}": rng.standard_normal(int(rng.integers(1, 40_000))).astype(np.float32)
          for i in range(30)}
    for step in range(2):
        f = tmp_path / f"m{step}.safetensors"
        save_file({k: v + np.float32(step * 1e-3) for k, v in ts.items()}, str(f))
        assert (OrderedHash.of(plan_file(f)) is None) == stream
        v = reg.commit(f, model="m")
        entry = reg.manifest(f"m@v{v.number}").files[0]
        assert entry.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
