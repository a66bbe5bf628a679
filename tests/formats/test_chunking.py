from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelvc.formats import cdc_boundaries
from modelvc.formats.chunking import MAX_SIZE, MIN_SIZE


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def chunks(data: bytes, ends: list[int]) -> list[bytes]:
    return [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


@pytest.fixture(scope="module")
def data() -> bytes:
    return random_bytes(24 << 20)


def test_sizes_respected_and_cover(data: bytes) -> None:
    ends = cdc_boundaries(data)
    sizes = np.diff([0, *ends])
    assert ends[-1] == len(data)
    assert sizes[:-1].min() >= MIN_SIZE and sizes.max() <= MAX_SIZE
    assert 0.5 * 2**20 < sizes.mean() < 2 * 2**20  # near the 1 MiB average


def test_deterministic_and_path_equals_buffer(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert cdc_boundaries(data) == cdc_boundaries(path) == cdc_boundaries(str(path))
    assert cdc_boundaries(memoryview(data)) == cdc_boundaries(bytearray(data))


def test_insert_at_start_shifts_only_the_first_chunk(data: bytes) -> None:
    before = set(chunks(data, cdc_boundaries(data)))
    edited = b"inserted header" * 1000 + data
    after = chunks(edited, cdc_boundaries(edited))
    shared = sum(c in before for c in after)
    assert shared >= len(after) - 2


def test_edit_in_the_middle_is_local(data: bytes) -> None:
    before = set(chunks(data, cdc_boundaries(data)))
    mid = len(data) // 2
    edited = data[:mid] + b"\x00" * 4096 + data[mid + 100 :]
    after = chunks(edited, cdc_boundaries(edited))
    assert sum(c not in before for c in after) <= 3


def test_small_empty_and_constant() -> None:
    assert cdc_boundaries(b"") == []
    assert cdc_boundaries(b"x" * 1000) == [1000]
    zeros = bytes(10 * MAX_SIZE + 5)  # no content to cut on: max-size chunks
    assert cdc_boundaries(zeros) == [*range(MAX_SIZE, 10 * MAX_SIZE + 1, MAX_SIZE), len(zeros)]


def test_vectorized_hash_matches_per_byte_gear() -> None:
    from modelvc.formats import chunking

    block = np.frombuffer(random_bytes(3000, seed=1), dtype=np.uint8)
    h = np.empty(4000, np.uint32)
    fast = chunking._block_hash(block, h, np.empty_like(h))
    ref, acc = [], 0
    for b in block.tolist():
        acc = ((acc << 1) + int(chunking.gear()[b])) & 0xFFFFFFFF
        ref.append(acc)
    assert fast.tolist() == ref


def test_block_size_does_not_change_boundaries(
    data: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelvc.formats import chunking

    expected = cdc_boundaries(data[: 8 << 20])
    path = tmp_path / "blob"
    path.write_bytes(data[: 8 << 20])
    monkeypatch.setattr(chunking, "BLOCK", 100_003)
    assert cdc_boundaries(data[: 8 << 20]) == expected == cdc_boundaries(path)
