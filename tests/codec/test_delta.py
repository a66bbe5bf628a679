from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec.cast import CAST_PAIRS, can_cast_predict, cast_predict
from modelvc.codec.delta import (
    delta_decode,
    delta_encode,
    from_ordered,
    to_ordered,
    unzigzag,
    zigzag,
)
from modelvc.codec.dtypes import DTYPES
from modelvc.codec.npdtypes import UINT_BY_SIZE
from modelvc.errors import UsageError

from .strategies import related, tensors

CODES = sorted(DTYPES)


@pytest.mark.parametrize("width", [1, 2])
def test_mappings_are_bijections_exhaustively(width: int) -> None:
    dt = UINT_BY_SIZE[width]
    every = np.arange(1 << (8 * width), dtype=np.uint64).astype(dt)
    ordered = to_ordered(every)
    assert np.unique(ordered).size == every.size
    assert np.array_equal(from_ordered(ordered), every)
    zz = zigzag(every.copy())
    assert np.unique(zz).size == every.size
    assert np.array_equal(unzigzag(zz), every)


def test_zigzag_maps_small_differences_to_small_ints() -> None:
    d = np.array([0, -1, 1, -2, 2], dtype=np.int32).view(np.uint32)
    assert zigzag(d.copy()).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("np_type", [np.float16, np.float32, np.float64])
def test_to_ordered_sorts_like_the_floats(np_type: type) -> None:
    rng = np.random.default_rng(3)
    values: np.ndarray = np.concatenate(
        [
            rng.standard_normal(2000) * 10.0 ** rng.integers(-5, 5, 2000),
            [0.0, -0.0, np.inf, -np.inf],
        ]
    ).astype(np_type)
    values = values[~np.isnan(values)]
    u = values.view(UINT_BY_SIZE[values.itemsize])
    order = np.argsort(to_ordered(u), kind="stable")
    assert np.all(np.diff(values[order].astype(np.float64)) >= 0)


@settings(max_examples=25, deadline=None)
@given(code=st.sampled_from(CODES), data=st.data())
def test_delta_round_trips_every_bit_pattern(code: str, data: st.DataObject) -> None:
    new, ref = data.draw(related(code))
    d = delta_encode(new, ref, code)
    assert len(d) == len(new)
    assert delta_decode(d, ref, code) == new


@settings(max_examples=25, deadline=None)
@given(code=st.sampled_from(CODES), data=st.data())
def test_delta_against_unrelated_reference(code: str, data: st.DataObject) -> None:
    new = b"".join(data.draw(tensors(code, min_size=5, max_size=5)))
    ref = b"".join(data.draw(tensors(code, min_size=5, max_size=5)))
    assert delta_decode(delta_encode(new, ref, code), ref, code) == new


def test_delta_of_identical_is_zero() -> None:
    raw = np.array([np.nan, -0.0, 1.5, -np.inf], np.float32).tobytes()
    assert delta_encode(raw, raw, "F32") == bytes(len(raw))


def test_delta_size_mismatch() -> None:
    with pytest.raises(UsageError):
        delta_encode(b"\0" * 8, b"\0" * 4, "F32")
    with pytest.raises(UsageError):
        delta_encode(b"\0" * 6, b"\0" * 6, "F32")


# --- cast prediction -----------------------------------------------------------------

NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16}


@pytest.mark.parametrize("pair", [p for p in sorted(CAST_PAIRS) if p[1] != "BF16"])
def test_cast_matches_ieee_rounding(pair: tuple[str, str]) -> None:
    # numpy's conversions are IEEE round-to-nearest-even on this machine.
    src, dst = pair
    rng = np.random.default_rng(5)
    size = DTYPES[src].itemsize
    bits = rng.integers(0, 1 << 62, 50_000, dtype=np.uint64).astype(UINT_BY_SIZE[size])
    scaled = rng.standard_normal(50_000) * 10.0 ** rng.integers(-45, 40, 50_000)
    edges = [0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, 6e-8, 2.98e-8, 1e-45, 3.4e38]
    with np.errstate(all="ignore"):
        x = np.concatenate([bits.view(NUMPY[src]), scaled.astype(NUMPY[src]), edges])
        x = x.astype(NUMPY[src])
        want = x.astype(NUMPY[dst])
    got = np.frombuffer(cast_predict(x.tobytes(), src, dst), NUMPY[dst])
    udt = UINT_BY_SIZE[want.itemsize]
    same_bits = want.view(udt) == got.view(udt)
    assert np.all(same_bits | (np.isnan(want) & np.isnan(got)))


def _bf16_to_f32(b: bytes) -> np.ndarray:
    return (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def test_f32_to_bf16_rounds_to_nearest_even() -> None:
    u = np.array([0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x00008000],
                 np.uint32)  # fmt: skip
    got = np.frombuffer(cast_predict(u.tobytes(), "F32", "BF16"), np.uint16)
    # exact, tie->even (down), tie->even (up), above tie (up), overflow -> inf, tiny tie
    assert got.tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x7F80, 0x0000]


def test_f32_to_bf16_is_nearest() -> None:
    x = np.random.default_rng(9).standard_normal(10_000).astype(np.float32)
    y = _bf16_to_f32(cast_predict(x.tobytes(), "F32", "BF16"))
    assert np.all(np.abs(y - x) <= np.abs(x) * 2.0**-8)


@pytest.mark.parametrize("pair", sorted(CAST_PAIRS))
def test_cast_keeps_nan_and_is_deterministic(pair: tuple[str, str]) -> None:
    src, dst = pair
    size = DTYPES[src].itemsize
    top = 1 << (8 * size - 1)
    exp_bits = 11 if src == "F64" else 8
    inf = ((1 << exp_bits) - 1) << (8 * size - 1 - exp_bits)
    nans = [inf | 1, inf | 2, inf | (1 << 3), top | inf | 5]
    raw = b"".join(v.to_bytes(size, "little") for v in nans)
    out = cast_predict(raw, src, dst)
    assert out == cast_predict(raw, src, dst)
    dsize = DTYPES[dst].itemsize
    vals = np.frombuffer(out, UINT_BY_SIZE[dsize]).astype(np.uint64)
    dexp, dman = {"F32": (8, 23), "F16": (5, 10), "BF16": (8, 7)}[dst]
    dinf = ((1 << dexp) - 1) << dman
    assert all((int(v) & ~(1 << (8 * dsize - 1))) > dinf for v in vals)


def test_unsupported_cast() -> None:
    assert can_cast_predict("F32", "BF16")
    assert not can_cast_predict("BF16", "F32")
    with pytest.raises(UsageError):
        cast_predict(b"\0" * 4, "I32", "F16")
