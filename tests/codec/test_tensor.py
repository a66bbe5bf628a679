from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec.block import decode_block, encode_block
from modelvc.codec.cast import CAST_PAIRS, cast_predict
from modelvc.codec.dtypes import DTYPES
from modelvc.codec.tensor import (
    BLOCK_ELEMENTS,
    TensorObjectWriter,
    block_spans,
    decode_tensor,
    encode_tensor,
    read_header,
    read_header_bytes,
)
from modelvc.errors import CorruptObject, UsageError

from .strategies import perturbed_f32, related, tensors

CODES = sorted(DTYPES)
SMALL_BLOCKS = st.sampled_from([1, 3, 7, 16, BLOCK_ELEMENTS])


def test_block_spans() -> None:
    assert block_spans(0) == [(0, 0)]
    assert block_spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert block_spans(4, 2) == [(0, 2), (2, 4)]
    assert len(block_spans(3 * BLOCK_ELEMENTS + 1)) == 4


@settings(max_examples=40, deadline=None)
@given(code=st.sampled_from(CODES), block=SMALL_BLOCKS, data=st.data())
def test_full_round_trip(code: str, block: int, data: st.DataObject) -> None:
    raw = b"".join(data.draw(tensors(code)))
    n = len(raw) // DTYPES[code].itemsize
    obj = encode_tensor(raw, code, (n,), block_elements=block)
    header = read_header_bytes(obj)
    assert (header.dtype, header.shape, header.raw_size, header.ref) == (code, (n,), len(raw), None)
    assert header.codec == "planes"
    assert len(header.blocks) == len(block_spans(n, block))
    assert decode_tensor(obj) == raw


@settings(max_examples=40, deadline=None)
@given(code=st.sampled_from(CODES), block=SMALL_BLOCKS, data=st.data())
def test_delta_round_trip(code: str, block: int, data: st.DataObject) -> None:
    new, ref = data.draw(related(code))
    n = len(new) // DTYPES[code].itemsize
    obj = encode_tensor(new, code, (n,), ref=ref, ref_id="parent", block_elements=block)
    header = read_header_bytes(obj)
    modes = {b.mode for b in header.blocks}
    assert modes <= {"full", "delta", "same"}
    assert header.ref == ("parent" if modes - {"full"} else None)
    assert decode_tensor(obj, ref=ref) == new


@settings(max_examples=30, deadline=None)
@given(pair=st.sampled_from(sorted(CAST_PAIRS)), block=SMALL_BLOCKS, data=st.data())
def test_cast_round_trip(pair: tuple[str, str], block: int, data: st.DataObject) -> None:
    ref_code, code = pair
    ref = b"".join(data.draw(tensors(ref_code)))
    n = len(ref) // DTYPES[ref_code].itemsize
    # An export of ref with some elements edited, and bit patterns of any kind.
    size = DTYPES[code].itemsize
    new = bytearray(cast_predict(ref, ref_code, code))
    for i in data.draw(st.lists(st.integers(0, max(0, n - 1)), max_size=n)):
        new[i * size : (i + 1) * size] = data.draw(tensors(code, 1, 1))[0]
    obj = encode_tensor(bytes(new), code, (n,), ref=ref, ref_code=ref_code, ref_id="p",
                        block_elements=block)  # fmt: skip
    header = read_header_bytes(obj)
    assert {b.mode for b in header.blocks} <= {"full", "cast"}
    assert decode_tensor(obj, ref=ref) == new


@pytest.mark.parametrize("code", CODES)
def test_same_blocks_and_multi_dim_shape(code: str) -> None:
    size = DTYPES[code].itemsize
    raw = np.random.default_rng(2).bytes(6 * 5 * size)
    obj = encode_tensor(raw, code, (6, 5), ref=raw, ref_id="p", block_elements=7)
    header = read_header_bytes(obj)
    assert header.shape == (6, 5)
    assert [b.mode for b in header.blocks] == ["same"] * 5
    assert [b.elements for b in header.blocks] == [7, 7, 7, 7, 2]
    assert header.codec == "delta" and header.ref == "p" and header.ref_dtype == code
    assert decode_tensor(obj, ref=raw) == raw


def test_zero_element_tensor() -> None:
    obj = encode_tensor(b"", "F32", (0, 3))
    header = read_header_bytes(obj)
    assert len(header.blocks) == 1 and header.blocks[0].elements == 0
    assert decode_tensor(obj) == b""
    assert decode_tensor(encode_tensor(b"", "BF16", (0,), ref=b"", ref_code="F32", ref_id="p"),
                         ref=b"") == b""  # fmt: skip


def test_scalar_tensor() -> None:
    raw = np.float32(3.5).tobytes()
    obj = encode_tensor(raw, "F32", ())
    assert read_header_bytes(obj).shape == ()
    assert decode_tensor(obj) == raw


# --- sizes -----------------------------------------------------------------------------


def test_delta_of_perturbed_f32_is_clearly_smaller_than_full() -> None:
    new, old = perturbed_f32(1 << 18)
    full = encode_tensor(new, "F32", (1 << 18,))
    delta = encode_tensor(new, "F32", (1 << 18,), ref=old, ref_id="old")
    assert read_header_bytes(delta).codec == "delta"
    assert len(delta) < 0.7 * len(full)
    assert decode_tensor(delta, ref=old) == new


def test_cast_delta_of_bf16_export_is_tiny() -> None:
    _, old = perturbed_f32(1 << 18)
    export = cast_predict(old, "F32", "BF16")
    obj = encode_tensor(export, "BF16", (1 << 18,), ref=old, ref_code="F32", ref_id="old")
    assert read_header_bytes(obj).codec == "cast"
    assert len(obj) < 0.02 * len(export)
    assert decode_tensor(obj, ref=old) == export


def test_unrelated_reference_falls_back_to_full() -> None:
    rng = np.random.default_rng(4)
    new = rng.bytes(4096)
    mode, payload = encode_block(new, "U8", ref=rng.bytes(4096))
    assert mode == "full"
    assert decode_block(mode, payload, "U8", 4096) == new


def test_uncastable_reference_is_ignored() -> None:
    raw = np.arange(16, dtype=np.float32).tobytes()
    mode, _ = encode_block(raw, "F32", ref=np.arange(16, dtype=np.int64).tobytes(), ref_code="I64")
    assert mode == "full"


def test_codec_summary_mixed() -> None:
    new, old = perturbed_f32(64)
    mixed = new[:128] + old[128:]
    obj = encode_tensor(mixed, "F32", (64,), ref=old, ref_id="o", block_elements=32)
    assert [b.mode for b in read_header_bytes(obj).blocks] == ["delta", "same"]
    unrelated = np.random.default_rng(0).bytes(128) + old[128:]
    obj = encode_tensor(unrelated, "F32", (64,), ref=old, ref_id="o", block_elements=32)
    assert read_header_bytes(obj).codec == "mixed"


# --- writer and reader -----------------------------------------------------------------


def test_writer_streams_blocks_and_reads_back_by_range() -> None:
    new, old = perturbed_f32(10)
    out = io.BytesIO()
    writer = TensorObjectWriter(out, "F32", (2, 5), ref_id="old", block_elements=4)
    for start, stop in block_spans(10, 4):
        writer.add_block(
            *encode_block(new[start * 4 : stop * 4], "F32", ref=old[start * 4 : stop * 4])
        )
    header = writer.finish()
    obj = out.getvalue()
    calls: list[tuple[int, int]] = []

    def read_range(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return obj[offset : offset + length]

    assert read_header(len(obj), read_range) == header
    assert len(calls) == 2 and calls[0] == (len(obj) - 8, 8)
    assert decode_tensor(obj, ref=old) == new


def test_writer_drops_unused_ref() -> None:
    out = io.BytesIO()
    writer = TensorObjectWriter(out, "F32", (2,), ref_id="old")
    writer.add_block("full", encode_block(b"\0" * 8, "F32")[1])
    header = writer.finish()
    assert header.ref is None and header.ref_dtype is None and header.codec == "planes"


def test_writer_misuse() -> None:
    out = io.BytesIO()
    with pytest.raises(UsageError):
        TensorObjectWriter(out, "F31", (1,))
    with pytest.raises(UsageError):
        TensorObjectWriter(out, "F32", (-1,))
    writer = TensorObjectWriter(io.BytesIO(), "F32", (2,))
    with pytest.raises(UsageError):
        writer.add_block("delta", b"")  # no ref_id
    with pytest.raises(UsageError):
        writer.add_block("zip", b"")
    with pytest.raises(UsageError):
        writer.finish()  # a block is missing
    writer.add_block("full", encode_block(b"\0" * 8, "F32")[1])
    with pytest.raises(UsageError):
        writer.add_block("full", b"")  # one block too many
    cast_writer = TensorObjectWriter(io.BytesIO(), "F32", (2,), ref_id="r", ref_code="F16")
    with pytest.raises(UsageError):
        cast_writer.add_block("cast", b"")  # F16 cannot predict F32
    with pytest.raises(UsageError):
        encode_tensor(b"\0" * 8, "F32", (2,), ref=b"\0" * 8)  # ref without ref_id
    with pytest.raises(UsageError):
        encode_tensor(b"\0" * 8, "F32", (3,))


# --- corruption ------------------------------------------------------------------------


def _object() -> tuple[bytes, bytes, bytes]:
    new, old = perturbed_f32(100)
    return encode_tensor(new, "F32", (100,), ref=old, ref_id="old", block_elements=32), new, old


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(1, 400), from_end=st.booleans())
def test_truncated_object_is_corrupt(cut: int, from_end: bool) -> None:
    obj, _, old = _object()
    cut = min(cut, len(obj))
    broken = obj[:-cut] if from_end else obj[cut:]
    with pytest.raises(CorruptObject):
        decode_tensor(broken, ref=old)


def _compressible_object() -> tuple[bytes, bytes, bytes]:
    """An object whose every plane is a zstd frame (no raw planes), so nothing is unchecked."""
    _, old = perturbed_f32(256)
    u = np.frombuffer(old, np.uint32).copy()
    u[::10] += 1
    new = u.tobytes()
    obj = encode_tensor(new, "F32", (256,), ref=old, ref_id="old", block_elements=128)
    for block in read_header_bytes(obj).blocks:
        assert block.mode == "delta" and obj[block.offset + 1] == 0  # raw-plane mask
    return obj, new, old


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_garbled_object_never_decodes_to_wrong_bytes(data: st.DataObject) -> None:
    obj, new, old = _compressible_object()
    broken = bytearray(obj)
    pos = data.draw(st.integers(0, len(obj) - 1))
    broken[pos] ^= data.draw(st.integers(1, 255))
    try:
        out = decode_tensor(bytes(broken), ref=old)
    except CorruptObject:
        return
    # A flip that still decodes must decode to the right bytes (e.g. a footer edit that
    # means the same, or a zstd frame field the decoder ignores). Raw planes (not used
    # here) are unchecked: the registry verifies the BLAKE3 of the decoded bytes.
    assert out == new


def test_corrupt_footers() -> None:
    obj, _, old = _object()
    header = read_header_bytes(obj)
    body_end = header.blocks[-1].offset + header.blocks[-1].length
    body = obj[:body_end]

    def rebuild(footer: bytes) -> bytes:
        return body + footer + len(footer).to_bytes(4, "little") + b"MVT1"

    assert decode_tensor(rebuild(header.to_json()), ref=old)
    for footer in [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        header.to_json().replace(b'"F32"', b'"F33"'),
        header.to_json().replace(b'"delta"', b'"zip"'),
        header.to_json().replace(b'"raw_size":400', b'"raw_size":404'),
        header.to_json().replace(b'"shape":[100]', b'"shape":[101]'),
        header.to_json().replace(b'"shape":[100]', b'"shape":[true]'),
        header.to_json().replace(b'"ref":"old"', b'"ref":null'),
        header.to_json().replace(b'"block_elements":32', b'"block_elements":0'),
        header.to_json()
        .replace(b'"shape":[100]', b'"shape":[1000000000000000]')
        .replace(b'"raw_size":400', b'"raw_size":4000000000000000')
        .replace(b'"block_elements":32', b'"block_elements":1'),  # must fail fast
    ]:
        with pytest.raises(CorruptObject):
            decode_tensor(rebuild(footer), ref=old)
    with pytest.raises(CorruptObject):
        read_header_bytes(b"MVT1" + b"\0" * 4)
    with pytest.raises(CorruptObject):
        read_header_bytes(b"XXXX" + obj[4:])
    with pytest.raises(CorruptObject):
        read_header_bytes(obj[:-4] + b"MVT2")
    with pytest.raises(CorruptObject):
        read_header_bytes(obj[:-8] + (1 << 30).to_bytes(4, "little") + b"MVT1")


def test_missing_or_wrong_reference_is_corrupt() -> None:
    obj, _, old = _object()
    with pytest.raises(CorruptObject, match="reference"):
        decode_tensor(obj)
    with pytest.raises(CorruptObject, match="reference"):
        decode_tensor(obj, ref=old[:-4])
    with pytest.raises(CorruptObject):
        decode_block("delta", b"", "F32", 4, ref=b"\0" * 4)
    with pytest.raises(CorruptObject):
        decode_block("cast", b"", "F32", 1, ref=b"\0" * 2, ref_code="F16")


@pytest.mark.parametrize("at", [0, 4095, 4096, 8 * 4096 - 1])
def test_a_block_as_views_is_same_only_when_every_byte_is(at: int) -> None:
    """Blocks read into pooled memory arrive as memoryviews: equal ones are "same",
    one changed byte anywhere (inside the first bytes compared or past them) is not."""
    raw = np.random.default_rng(3).standard_normal(8 * 1024).astype(np.float32).tobytes()
    assert encode_block(memoryview(raw), "F32", ref=memoryview(bytearray(raw)))[0] == "same"
    changed = bytearray(raw)
    changed[at] ^= 1
    mode, payload = encode_block(memoryview(changed), "F32", ref=memoryview(raw))
    assert mode != "same"
    assert decode_block(mode, payload, "F32", len(raw) // 4, ref=raw) == bytes(changed)
