from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec.planes import compress_planes, decompress_planes
from modelvc.errors import CorruptObject, UsageError

ITEMSIZES = [1, 2, 4, 8]


@settings(max_examples=60, deadline=None)
@given(itemsize=st.sampled_from(ITEMSIZES), data=st.data())
def test_round_trip_arbitrary_bytes(itemsize: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 300))
    raw = data.draw(
        st.one_of(
            st.binary(min_size=n * itemsize, max_size=n * itemsize),
            st.just(bytes(n * itemsize)),
            st.just(bytes([7, 0, 0, 1, 2, 3, 4, 5][:itemsize]) * n),
        )
    )
    payload = compress_planes(raw, itemsize)
    assert decompress_planes(payload, itemsize, n) == raw


def test_exponent_plane_compresses_mantissa_plane_stays_raw() -> None:
    raw = np.random.default_rng(1).standard_normal(1 << 16).astype(np.float32).tobytes()
    payload = compress_planes(raw, 4)
    raw_mask = payload[1]
    assert raw_mask & 1, "the lowest mantissa byte is noise: stored raw"
    assert not raw_mask & 8, "the sign/exponent byte compresses"
    assert len(payload) < len(raw)
    assert decompress_planes(payload, 4, 1 << 16) == raw


def test_accepts_memoryview_and_bytearray() -> None:
    raw = bytearray(range(256)) * 4
    assert decompress_planes(compress_planes(memoryview(raw), 2), 2, 512) == bytes(raw)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        compress_planes(b"abc", 2)
    with pytest.raises(UsageError):
        compress_planes(b"abcdef", 3)


def _sample() -> bytes:
    values = np.linspace(-1, 1, 4096, dtype=np.float32)
    return compress_planes(values.tobytes(), 4)


def test_wrong_itemsize_or_count_is_corrupt() -> None:
    payload = _sample()
    with pytest.raises(CorruptObject):
        decompress_planes(payload, 2, 8192)
    with pytest.raises(CorruptObject):
        decompress_planes(payload, 4, 4095)


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 200))
def test_truncated_payload_is_corrupt(cut: int) -> None:
    payload = _sample()
    with pytest.raises(CorruptObject):
        decompress_planes(payload[: max(0, len(payload) - 1 - cut)], 4, 4096)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_garbled_compressed_plane_is_corrupt(data: st.DataObject) -> None:
    # Constant data: every plane is a zstd frame, whose checksum covers the content.
    payload = bytearray(compress_planes(np.full(4096, 0.5, np.float32).tobytes(), 4))
    assert payload[1] == 0
    pos = data.draw(st.integers(0, len(payload) - 1))
    payload[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CorruptObject):
        decompress_planes(bytes(payload), 4, 4096)
