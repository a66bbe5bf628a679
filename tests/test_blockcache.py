"""The decoded-block cache is keyed by the bytes a block spans, not only by object and
block number: an object id names decoded bytes whatever their encoding, so one process
may hold blocks of one id in two layouts (it encoded the bytes as I32 while another
writer stored them as F64 first; the store keeps that one)."""

from __future__ import annotations

import blake3
import numpy as np

from modelvc.blockcache import BlockCache
from modelvc.codec import BLOCK_ELEMENTS
from modelvc.objects.memory import MemoryStore
from modelvc.storage import ObjectIO


def test_blocks_of_one_object_in_two_layouts_do_not_collide() -> None:
    store = MemoryStore()
    mine, other = ObjectIO(store), ObjectIO(store)  # two writers, one store
    x = np.random.default_rng(4).integers(-2**31, 2**31 - 1, 2 * BLOCK_ELEMENTS,
                                          dtype=np.int64).astype(np.int32)
    raw = x.tobytes()
    f64 = np.frombuffer(raw, dtype=np.float64)
    stored_first = []

    def read(off: int, n: int) -> memoryview:
        if not stored_first:  # the other writer wins the race, as F64
            stored_first.append(other.put_tensor(f64, "F64", f64.shape))
        return memoryview(raw)[off : off + n]

    got = mine.put_tensor_from(read, "I32", x.shape, oid=blake3.blake3(raw).hexdigest())
    assert not got.new and stored_first[0].new
    assert mine.header(got.row.id).dtype == "F64"  # the store's encoding
    # This process encoded (and cached) 4 MiB I32 blocks; the F64 object's blocks are
    # 8 MiB: a block 0 of the wrong layout is half the bytes and fails the id.
    assert mine.read_tensor(got.row.id) == raw
    assert other.read_tensor(got.row.id) == raw


def test_a_block_is_found_under_any_layout_with_the_same_span() -> None:
    cache = BlockCache(1 << 20)
    cache.put("o", 0, 4096, b"a" * 4096)
    assert cache.get("o", 0, 4096) == b"a" * 4096  # F32 and I32 blocks: the same bytes
    assert cache.get("o", 0, 8192) is None  # an F64 block 0 is other bytes
    cache.drop("o")
    assert cache.get("o", 0, 4096) is None
