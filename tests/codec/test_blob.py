from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec.blob import decode_blob, encode_blob
from modelvc.errors import CorruptObject


@settings(max_examples=60, deadline=None)
@given(data=st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(str.encode)))
def test_round_trip(data: bytes) -> None:
    assert decode_blob(encode_blob(data)) == data


def test_compressible_is_zstd_incompressible_is_raw() -> None:
    text = b'{"hidden_size": 384, "num_attention_heads": 12}\n' * 100
    assert encode_blob(text).startswith(b"MVB1")
    assert len(encode_blob(text)) < len(text) // 4
    noise = os.urandom(10_000)
    assert encode_blob(noise) == b"MVB0" + noise
    assert decode_blob(encode_blob(noise)) == noise
    assert decode_blob(encode_blob(b"")) == b""


def test_accepts_memoryview() -> None:
    data = b"abc" * 1000
    assert decode_blob(memoryview(encode_blob(memoryview(data)))) == data


def test_bad_magic() -> None:
    with pytest.raises(CorruptObject, match="magic"):
        decode_blob(b"MVT1" + b"\0" * 10)
    with pytest.raises(CorruptObject):
        decode_blob(b"")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_garbled_or_truncated_zstd_is_corrupt(data: st.DataObject) -> None:
    obj = bytearray(encode_blob(b"weights and biases " * 200))
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(4, len(obj) - 1))
        obj[pos] ^= data.draw(st.integers(1, 255))
    else:
        obj = obj[: data.draw(st.integers(4, len(obj) - 1))]
    with pytest.raises(CorruptObject):
        decode_blob(bytes(obj))


def test_trailing_data_is_corrupt() -> None:
    with pytest.raises(CorruptObject):
        decode_blob(encode_blob(b"x" * 1000) + b"junk")
