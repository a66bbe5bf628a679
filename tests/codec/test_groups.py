"""Grouped residuals (format 2: "gdelta"/"gextrap" blocks) and reading format 1."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec import block as block_mod
from modelvc.codec import groups, kernels
from modelvc.codec.block import decode_block, decode_chain, encode_block
from modelvc.codec.tensor import decode_tensor, encode_tensor, read_header_bytes
from modelvc.errors import CorruptObject

from .strategies import perturbed_f32, specials

DATA = Path(__file__).parent / "data"
both_impls = pytest.mark.parametrize("impl", [
    pytest.param(kernels.native, id="C", marks=pytest.mark.skipif(
        kernels.native is None, reason="C kernels not built")),
    pytest.param(kernels.NumpyKernels, id="numpy"),
])


@pytest.fixture(autouse=True, scope="module")
def grouping_on() -> Iterator[None]:
    """Encoders write grouped blocks only with codec.groups.WRITE_GROUPED (off by default
    since session 6); these tests are about them. Module-scoped: hypothesis refuses
    function-scoped fixtures."""
    was = groups.WRITE_GROUPED
    groups.WRITE_GROUPED = True
    yield
    groups.WRITE_GROUPED = was


@pytest.fixture
def impl_used(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "impl", request.param)


def _scaled(n: int, seed: int, code: str) -> tuple[bytes, bytes, bytes]:
    """ref2, ref, new: weights of many scales moved by similar steps (as optimizers do)."""
    rng = np.random.default_rng(seed)
    spread = 1 if code == "F16" else 3  # F16 tops out at 65504
    a = (rng.standard_normal(n) * np.exp(spread * rng.standard_normal(n))).astype(np.float64)
    step = rng.standard_normal(n) * 1e-3
    vals = [a, a + step, a + 2 * step + rng.standard_normal(n) * 1e-5]
    if code == "BF16":
        return tuple((v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
                     for v in vals)  # type: ignore[return-value]
    dt = {"F16": np.float16, "F32": np.float32, "F64": np.float64}[code]
    return tuple(v.astype(dt).tobytes() for v in vals)  # type: ignore[return-value]


@pytest.mark.parametrize("impl_used", [
    pytest.param(kernels.native, id="C", marks=pytest.mark.skipif(
        kernels.native is None, reason="C kernels not built")),
    pytest.param(kernels.NumpyKernels, id="numpy"),
], indirect=True)
@pytest.mark.parametrize("code", ["F16", "BF16", "F32", "F64"])
def test_grouped_blocks_round_trip_and_are_smaller(impl_used: None, code: str) -> None:
    ref2, ref, new = _scaled(20001, 1, code)  # crosses the C chunk and numpy slice sizes
    n = 20001
    mode, payload = encode_block(new, code, ref=ref, ref2=ref2)
    assert mode in ("gdelta", "gextrap")
    assert decode_block(mode, payload, code, n, ref=ref, ref2=ref2) == new
    # in a chain run (the checkout path): ref2 at the bottom, ref as a plain delta link
    m1, p1 = encode_block(ref, code, ref=ref2)
    assert bytes(decode_chain(code, n, [(m1, p1), (mode, payload)], base=ref2)) == new
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(groups, "GROUP_MIN_ELEMENTS", 1 << 30)
        plain_mode, plain = encode_block(new, code, ref=ref, ref2=ref2)
    assert plain_mode == mode[1:]
    assert len(payload) < len(plain)


@both_impls
def test_both_kernels_group_and_decode_alike(impl: object) -> None:
    _, ref, new = _scaled(9000, 2, "F32")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "impl", impl)
        mode, payload = encode_block(new, "F32", ref=ref)
    for other in (kernels.NumpyKernels, kernels.native):
        if other is None:
            continue
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "impl", other)
            assert encode_block(new, "F32", ref=ref) == (mode, payload)
            assert decode_block(mode, payload, "F32", 9000, ref=ref) == new


@settings(max_examples=40, deadline=None)
@given(data=st.data(), code=st.sampled_from(["F16", "BF16", "F32", "F64"]))
def test_any_bits_round_trip_grouped(data: st.DataObject, code: str) -> None:
    """NaNs, infinities, -0.0, subnormals: grouping is exact whatever the bits."""
    pool = specials(code)
    w = len(pool[0])
    n = data.draw(st.integers(1, 300))
    pick = st.lists(st.sampled_from(pool) | st.binary(min_size=w, max_size=w),
                    min_size=n, max_size=n)
    ref, new = b"".join(data.draw(pick)), b"".join(data.draw(pick))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(groups, "GROUP_MIN_ELEMENTS", 1)
        mp.setattr(block_mod, "_groups_pay", lambda *a: True)
        mode, payload = encode_block(new, code, ref=ref)
    assert decode_block(mode, payload, code, n, ref=ref) == new
    if mode == "gdelta":
        assert bytes(decode_chain(code, n, [(mode, payload)], base=ref)) == new


def test_grouping_is_skipped_where_few_elements_moved() -> None:
    """Sparse updates (embedding rows): long zero runs compress better in element order."""
    ref2, ref, new = _scaled(1 << 16, 5, "F32")
    sparse = bytearray(ref)
    sparse[: 1 << 12] = new[: 1 << 12]  # the first 1024 elements moved, nothing else
    assert encode_block(bytes(sparse), "F32", ref=ref)[0] == "delta"
    assert encode_block(new, "F32", ref=ref, ref2=ref2)[0] == "gextrap"


def _grouped_object() -> tuple[bytes, bytes, bytes]:
    new, old = perturbed_f32(256)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(groups, "GROUP_MIN_ELEMENTS", 1)
        mp.setattr(block_mod, "_groups_pay", lambda *a: True)
        obj = encode_tensor(new, "F32", (256,), ref=old, ref_id="old", block_elements=128)
    assert {b.mode for b in read_header_bytes(obj).blocks} == {"gdelta"}
    return obj, new, old


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_garbled_grouped_object_never_decodes_to_wrong_bytes(data: st.DataObject) -> None:
    obj, new, old = _grouped_object()
    header = read_header_bytes(obj)
    block = header.blocks[data.draw(st.integers(0, len(header.blocks) - 1))]
    m = obj[block.offset]  # the group sizes: flips there must not go unnoticed
    pos = block.offset + data.draw(st.integers(0, 2 + 5 * m - 1))
    broken = bytearray(obj)
    broken[pos] ^= data.draw(st.integers(1, 255))
    for impl in (kernels.NumpyKernels, kernels.native):
        if impl is None:
            continue
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "impl", impl)
            try:
                out = decode_tensor(bytes(broken), ref=old)
            except CorruptObject:
                continue
            assert out == new
            # the chain path (checkout) checks the groups too
            start = header.blocks.index(block) * 128
            ref = old[start * 4:(start + block.elements) * 4]
            payload = bytes(broken)[block.offset:block.offset + block.length]
            try:
                got = decode_chain("F32", block.elements, [("gdelta", payload)], base=ref)
            except CorruptObject:
                continue
            assert bytes(got) == new[start * 4:(start + block.elements) * 4]


def test_grouped_block_against_another_reference_is_corrupt() -> None:
    _, ref, new = _scaled(5000, 3, "F32")
    mode, payload = encode_block(new, "F32", ref=ref)
    assert mode == "gdelta"
    other = _scaled(5000, 4, "F32")[1]  # other exponents: the groups cannot fit
    for impl in (kernels.NumpyKernels, kernels.native):
        if impl is None:
            continue
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "impl", impl)
            with pytest.raises(CorruptObject):
                decode_chain("F32", 5000, [(mode, payload)], base=other)
            with pytest.raises(CorruptObject):
                decode_block(mode, payload, "F32", 5000, ref=other)
    with pytest.raises(CorruptObject):
        decode_block("gdelta", payload, "I32", 5000, ref=ref)


def test_format1_blocks_still_decode() -> None:
    """Blocks written by the codec before grouping (main at 4d3eb34) decode unchanged."""
    rng = np.random.default_rng(2026)
    a = (rng.standard_normal(4096) * np.exp(rng.standard_normal(4096))).astype(np.float32)
    step = (rng.standard_normal(4096) * 1e-4).astype(np.float32)
    b = (a + step).astype(np.float32)
    c = (b + step + rng.standard_normal(4096).astype(np.float32) * 1e-6).astype(np.float32)
    bf_b = (b.view(np.uint32) >> 16).astype(np.uint16)
    bf_c = (c.view(np.uint32) >> 16).astype(np.uint16)
    blocks = _stored_blocks("format1_blocks.bin")
    assert [m for m, _ in blocks] == ["delta", "extrap", "delta"]
    (m0, p0), (m1, p1), (m2, p2) = blocks
    assert decode_block(m0, p0, "F32", 4096, ref=a.tobytes()) == b.tobytes()
    assert decode_block(m1, p1, "F32", 4096, ref=b.tobytes(), ref2=a.tobytes()) == c.tobytes()
    assert bytes(decode_chain("F32", 4096, [(m0, p0), (m1, p1)], base=a.tobytes())) == (
        c.tobytes())
    assert decode_block(m2, p2, "BF16", 4096, ref=bf_b.tobytes()) == bf_c.tobytes()


def _stored_blocks(name: str) -> list[tuple[str, bytes]]:
    """(method, payload) of each block in tests/codec/data/NAME (u8 method length, u32
    payload length, method, payload)."""
    raw = (DATA / name).read_bytes()
    blocks = []
    pos = 0
    while pos < len(raw):
        ml, pl = struct.unpack_from("<BI", raw, pos)
        pos += 5
        blocks.append((raw[pos:pos + ml].decode(), raw[pos + ml:pos + ml + pl]))
        pos += ml + pl
    return blocks


def _format2_values(code: str) -> list[bytes]:
    """The values tests/codec/data/format2_blocks.bin was written from (main at c4b83da,
    the format-2 writer of ae8aa5e/81442b8), for each dtype: a, b, c."""
    rng = np.random.default_rng(2027)
    spread = 1 if code == "F16" else 3
    a = rng.standard_normal(4096) * np.exp(spread * rng.standard_normal(4096))
    step = rng.standard_normal(4096) * 1e-3
    v = [a, a + step, a + 2 * step + rng.standard_normal(4096) * 1e-5]
    if code == "BF16":
        return [(x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
                for x in v]
    dt = {"F16": np.float16, "F32": np.float32, "F64": np.float64}[code]
    return [x.astype(dt).tobytes() for x in v]


@both_impls
def test_format2_blocks_still_decode(impl: object) -> None:
    """Grouped blocks written by format 2's writer decode bit-exact, alone and as a
    chain (the checkout path), whatever the kernels un-group them with."""
    blocks = _stored_blocks("format2_blocks.bin")
    codes = ["F32", "BF16", "F16", "F64"]
    assert [m for m, _ in blocks] == ["gdelta", "gextrap"] * 2 + ["gdelta", "extrap"] + [
        "gdelta", "gextrap"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "impl", impl)
        for j, code in enumerate(codes):
            a, b, c = _format2_values(code)
            (m0, p0), (m1, p1) = blocks[2 * j : 2 * j + 2]
            assert decode_block(m0, p0, code, 4096, ref=a) == b
            assert decode_block(m1, p1, code, 4096, ref=b, ref2=a) == c
            assert bytes(decode_chain(code, 4096, [(m0, p0), (m1, p1)], base=a)) == c


@pytest.mark.skipif(not hasattr(kernels.native, "set_expand"),
                    reason="C kernels not built, or a version-2 build (rebuild: "
                           "python setup.py build_ext --inplace)")
@pytest.mark.parametrize("code", ["F16", "BF16", "F32", "F64"])
def test_both_native_ungroup_paths_agree(code: str) -> None:
    """The C kernels un-group with AVX-512 expand-loads where the CPU has them and a
    byte gather elsewhere: both give the same bytes, and both refuse groups that do not
    fit the reference."""
    native = kernels.native
    assert native is not None
    ref2, ref, new = _scaled(20001, 7, code)  # 20001: a last chunk not a multiple of 64
    m1, p1 = encode_block(ref, code, ref=ref2)
    m2, p2 = encode_block(new, code, ref=ref, ref2=ref2)
    m3, p3 = encode_block(new, code, ref=ref)
    assert m2[0] == "g" and m3 == "gdelta"
    other = _scaled(20001, 8, code)[1]
    was = native.set_expand(True)
    try:
        for expand in (True, False):
            native.set_expand(expand)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(kernels, "impl", native)
                got = decode_chain(code, 20001, [(m1, p1), (m2, p2)], base=ref2)
                assert bytes(got) == new
                assert bytes(decode_chain(code, 20001, [(m3, p3)], base=ref)) == new
                with pytest.raises(CorruptObject):
                    decode_chain(code, 20001, [(m3, p3)], base=other)
    finally:
        native.set_expand(was)


def test_grouping_off_writes_format1_blocks() -> None:
    """WRITE_GROUPED off (the default; bench/storage.py without --groups): plain
    delta/extrap blocks, which decode; grouped blocks written before still decode."""
    ref2, ref, new = _scaled(20001, 9, "F32")
    grouped = encode_block(new, "F32", ref=ref, ref2=ref2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(groups, "WRITE_GROUPED", False)
        mode, payload = encode_block(new, "F32", ref=ref, ref2=ref2)
        assert mode in ("delta", "extrap")
        assert decode_block(mode, payload, "F32", 20001, ref=ref, ref2=ref2) == new
        assert decode_block(*grouped, "F32", 20001, ref=ref, ref2=ref2) == new
    assert grouped[0][0] == "g" and len(grouped[1]) < len(payload)
