"""The C kernels compute bit for bit what the numpy reference computes, on any bytes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec import kernels
from modelvc.codec.buffers import BufferPool
from modelvc.codec.cast import cast_predict

NATIVE = kernels.native
REF = kernels.NumpyKernels
needs_native = pytest.mark.skipif(NATIVE is None, reason="C kernels not built")
WIDTHS = st.sampled_from([1, 2, 4, 8])
# Odd lengths cross the C chunk (4096 elements) and numpy slice (65536) boundaries.
LENGTHS = st.sampled_from([0, 1, 7, 4095, 4097, 70001])


def test_native_kernels_are_built() -> None:
    """The test install compiles the extension; only an explicit opt-out skips it."""
    if os.environ.get("MODELVC_PURE_CODEC"):
        assert not kernels.NATIVE
    else:
        assert kernels.NATIVE, ("modelvc.codec._kernels did not build (is a C compiler there?) "
                                "or is stale: python setup.py build_ext --inplace")


def _bytes(seed: int, n: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@needs_native
@settings(max_examples=60, deadline=None)
@given(w=WIDTHS, n=LENGTHS, seed=st.integers(0, 2**16))
def test_merge_and_split_match(w: int, n: int, seed: int) -> None:
    src = _bytes(seed, n * w)
    a, b = kernels.empty(n * w), kernels.empty(n * w)
    NATIVE.split(a, src, w)
    REF.split(b, src, w)
    assert a.tobytes() == b.tobytes()
    planes = [a[k * n:(k + 1) * n].tobytes() for k in range(w)]
    NATIVE.merge(a, planes)
    REF.merge(b, planes)
    assert a.tobytes() == b.tobytes() == src


@needs_native
@settings(max_examples=80, deadline=None)
@given(w=WIDTHS, n=LENGTHS, seed=st.integers(0, 2**16), k=st.integers(0, 16),
       is_float=st.booleans(), with_ref2=st.booleans())
def test_residual_matches(w: int, n: int, seed: int, k: int, is_float: bool,
                          with_ref2: bool) -> None:
    new, ref, ref2 = (_bytes(seed + i, n * w) for i in range(3))
    a, b = kernels.empty(n * w), kernels.empty(n * w)
    r2 = ref2 if with_ref2 else None
    NATIVE.residual(a, new, ref, r2, k, w, is_float)
    REF.residual(b, new, ref, r2, k, w, is_float)
    assert a.tobytes() == b.tobytes()


LINK = st.one_of(st.none(), st.integers(0, 16))  # None: a "same" link


@needs_native
@settings(max_examples=80, deadline=None)
@given(w=WIDTHS, n=LENGTHS, seed=st.integers(0, 2**16), is_float=st.booleans(),
       ks=st.lists(LINK, max_size=5), planes_base=st.booleans())
def test_run_matches(w: int, n: int, seed: int, is_float: bool, ks: list[int | None],
                     planes_base: bool) -> None:
    if ks and ks[0]:
        ks[0] = 0  # the first link has no step to extrapolate
    links: list[kernels.Link] = [
        (0, None) if k is None else (k, [_bytes(seed + 10 * j + b, n) for b in range(w)])
        for j, k in enumerate(ks)]
    base_raw = _bytes(seed + 999, n * w)
    base: object = [base_raw[b::w] for b in range(w)] if planes_base and n else base_raw
    a, b = kernels.empty(n * w), kernels.empty(n * w)
    NATIVE.run(a, base, links, w, is_float)
    REF.run(b, base, links, w, is_float)
    assert a.tobytes() == b.tobytes()


@needs_native
@settings(max_examples=40, deadline=None)
@given(n=LENGTHS, seed=st.integers(0, 2**16), ks=st.lists(st.integers(0, 4), max_size=4))
def test_run_with_cast_link_matches(n: int, seed: int, ks: list[int]) -> None:
    if ks:
        ks[0] = 0
    links: list[kernels.Link] = [(k, [_bytes(seed + 10 * j + b, n) for b in range(4)])
                                 for j, k in enumerate(ks)]
    base = _bytes(seed, 4 * n)
    cast = [_bytes(seed + 500, n), _bytes(seed + 501, n)]
    a, b = kernels.empty(2 * n), kernels.empty(2 * n)
    NATIVE.run(a, base, links, 4, True, cast)
    REF.run(b, base, links, 4, True, cast)
    assert a.tobytes() == b.tobytes()


@needs_native
@settings(max_examples=60, deadline=None)
@given(n=LENGTHS, seed=st.integers(0, 2**16))
def test_cast_bf16_matches_every_bit_pattern_kind(n: int, seed: int) -> None:
    u = np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint32)
    specials = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFFFFFFF,
                         0x7F800001, 0x00000001, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F808000,
                         0x3F818000], dtype=np.uint32)
    u[: min(n, specials.size)] = specials[: min(n, specials.size)]
    a, b = kernels.empty(2 * n), kernels.empty(2 * n)
    NATIVE.cast_bf16(a, u)
    REF.cast_bf16(b, u)
    assert a.tobytes() == b.tobytes()
    assert bytes(cast_predict(u.tobytes(), "F32", "BF16")) == b.tobytes()


@needs_native
def test_bad_arguments_raise_instead_of_reading_out_of_bounds() -> None:
    out = kernels.empty(8)
    with pytest.raises(ValueError, match="element width"):
        NATIVE.split(out, b"\0" * 8, 3)
    with pytest.raises(ValueError, match="expected"):
        NATIVE.merge(kernels.empty(7), [b"\0" * 4, b"\0" * 4])
    with pytest.raises(ValueError, match="byte plane"):
        NATIVE.merge(out, [b"\0" * 4, b"\0" * 3])
    with pytest.raises(ValueError, match="extrapolate"):
        NATIVE.run(out, b"\0" * 8, [(2, [b"\0" * 2] * 4)], 4, True)
    with pytest.raises(ValueError, match="cast"):
        NATIVE.run(kernels.empty(4), b"\0" * 8, [], 2, True, [b"\0" * 4] * 2)
    with pytest.raises(BufferError):
        NATIVE.run(b"\0" * 8, b"\0" * 8, [], 4, True)  # read-only output


@needs_native
@settings(max_examples=80, deadline=None)
@given(w=WIDTHS, n=st.sampled_from([0, 1, 2, 7, 4096]), seed=st.integers(0, 2**16),
       is_float=st.booleans(), moved=st.sampled_from([0.0, 0.01, 0.5, 1.0]),
       k=st.integers(1, 20))
def test_step_ratio_matches(w: int, n: int, seed: int, is_float: bool, moved: float,
                            k: int) -> None:
    """The median step multiple, as numpy.median takes it (an even count averages the
    middle two), for random bytes and for a new block k steps on from its references."""
    rng = np.random.default_rng(seed)
    ref2 = rng.integers(0, 256, n * w, dtype=np.uint8)
    step = (rng.random(n * w) < moved) * rng.integers(0, 3, n * w)
    ref = (ref2 + step).astype(np.uint8)
    for new in (_bytes(seed + 1, n * w), (ref + k * step).astype(np.uint8).tobytes()):
        got = NATIVE.step_ratio(new, ref.tobytes(), ref2.tobytes(), w, is_float)
        want = REF.step_ratio(new, ref.tobytes(), ref2.tobytes(), w, is_float)
        assert (got is None) == (want is None) == (not np.any(step))
        assert got == want


@needs_native
def test_step_ratio_finds_the_multiple_of_a_decaying_row() -> None:
    ref2 = np.linspace(0.5, 1.5, 5000, dtype=np.float32)
    ref = ref2 * np.float32(0.999)
    new = ref - 7 * (ref2 - ref)  # seven more steps of the same decay
    got = kernels.step_ratio(new.tobytes(), ref.tobytes(), ref2.tobytes(), 4, True)
    assert got is not None and round(got) == 7
    assert kernels.step_ratio(ref.tobytes(), ref.tobytes(), ref.tobytes(), 4, True) is None


def test_equal_and_empty() -> None:
    a = _bytes(3, 5000)
    assert kernels.equal(a, bytearray(a)) and kernels.equal(b"", b"")
    assert not kernels.equal(a, a[:-1]) and not kernels.equal(a, a[:-1] + b"x")
    buf = kernels.empty(5000)
    view = memoryview(buf)
    assert view.nbytes == 5000 and not view.readonly
    view[:] = a
    assert bytes(view) == a and kernels.equal(buf, a)
    if NATIVE is not None:
        assert isinstance(buf, memoryview)  # no numpy needed to decode
        with pytest.raises(ValueError):
            kernels.empty(-1)


def test_buffer_pool_reuses_memory_by_size_class() -> None:
    pool = BufferPool(max_bytes=1 << 22)
    a = pool.take(300_000)
    assert memoryview(a).nbytes >= 300_000
    pool.give(a)
    b = pool.take(290_000)  # same 256 KiB class: the same memory again
    assert b is a
    small = pool.take(100)
    pool.give(small)  # small buffers are left to malloc
    assert pool.take(100) is not small
    big = [pool.take(1 << 21) for _ in range(3)]
    for x in big:
        pool.give(x)  # only 4 MiB may idle: the third is dropped
    again = [pool.take(1 << 21) for _ in range(3)]
    assert sum(any(a is b for b in big) for a in again) == 2


@needs_native
def test_the_longest_run_of_the_widest_elements_is_held_safely() -> None:
    """64 links of 8-byte elements on planes, with every buffer the kernel may hold."""
    n = 33
    links: list[kernels.Link] = [(0, [_bytes(j * 8 + b, n) for b in range(8)]) for j in range(64)]
    base = [_bytes(900 + b, n) for b in range(8)]
    a, b = kernels.empty(8 * n), kernels.empty(8 * n)
    NATIVE.run(a, base, links, 8, True)
    REF.run(b, base, links, 8, True)
    assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="at most 64"):
        NATIVE.run(a, base, [*links, (0, None)], 8, True)
