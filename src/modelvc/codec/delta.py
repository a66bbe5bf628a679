"""Order-preserving integer mapping and wrapping deltas between same-dtype tensors.

Every step is a bijection on all bit patterns of the element width (NaN payloads,
-0.0, infinities, subnormals included), so ``delta_decode(delta_encode(a, r), r)``
returns ``a`` bit for bit whatever the values. The delta is the same length as
the input; byte planes + zstd then squeeze out the small differences.

Floats are sign-magnitude: a tiny step across zero is a huge jump in raw bits.
Mapping them to order-preserving unsigned ints first makes neighbouring values
neighbouring integers, so a slightly perturbed weight gives a small difference.
Zigzag then folds small negative differences into small positive ints, which
leaves the high byte planes almost all zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from modelvc.codec.cast import can_cast_predict, cast_predict
from modelvc.codec.dtypes import Buffer, dtype_info
from modelvc.codec.npdtypes import INT_BY_SIZE, UINT_BY_SIZE
from modelvc.errors import UsageError

__all__ = [
    "can_cast_predict",
    "cast_predict",
    "delta_decode",
    "delta_encode",
    "extrap_encode",
    "from_ordered",
    "to_ordered",
    "unzigzag",
    "unzigzag_inplace",
    "zigzag",
]

UArray = npt.NDArray[np.unsignedinteger]


def _uints(buf: Buffer, itemsize: int, what: str) -> UArray:
    size = memoryview(buf).nbytes
    if size % itemsize:
        raise UsageError(f"{what}: {size} bytes is not a whole number of {itemsize}-byte elements")
    return np.frombuffer(buf, dtype=UINT_BY_SIZE[itemsize])


def _top_bit_mask(u: UArray) -> UArray:
    """All ones where the top bit of ``u`` is set, else zero (arithmetic shift)."""
    bits = u.dtype.itemsize * 8
    signed = u.view(INT_BY_SIZE[u.dtype.itemsize]) >> (bits - 1)
    return signed.view(u.dtype)


def to_ordered(u: UArray) -> UArray:
    """Map sign-magnitude float bits to unsigned ints that sort like the floats.

    Negative (sign set): flip all bits, so more negative sorts lower. Positive:
    set the sign bit, so every positive sorts above every negative. A new array.
    """
    sign = u.dtype.type(1 << (u.dtype.itemsize * 8 - 1))
    flip = _top_bit_mask(u)
    flip |= sign
    flip ^= u
    return flip


def from_ordered(m: UArray) -> UArray:
    """Inverse of to_ordered. A new array."""
    sign = m.dtype.type(1 << (m.dtype.itemsize * 8 - 1))
    flip = _top_bit_mask(m)
    np.invert(flip, out=flip)
    flip |= sign
    flip ^= m
    return flip


def zigzag(d: UArray) -> UArray:
    """In place: 0, -1, 1, -2, ... (as wrapped unsigned) -> 0, 1, 2, 3, ..."""
    fill = _top_bit_mask(d)
    d <<= d.dtype.type(1)
    d ^= fill
    return d


def unzigzag(z: UArray) -> UArray:
    """Inverse of zigzag. A new array."""
    low = z & z.dtype.type(1)
    signed = low.view(INT_BY_SIZE[z.dtype.itemsize])
    np.negative(signed, out=signed)  # 1 -> all ones, 0 -> 0
    out = z >> z.dtype.type(1)
    out ^= low
    return out


def unzigzag_inplace(z: UArray) -> UArray:
    low = z & z.dtype.type(1)
    signed = low.view(INT_BY_SIZE[z.dtype.itemsize])
    np.negative(signed, out=signed)
    z >>= z.dtype.type(1)
    z ^= low
    return z


def delta_encode(new: Buffer, ref: Buffer, code: str) -> bytes:
    """Zigzagged wrapping difference ``new - ref`` (float kinds via to_ordered); same length."""
    info = dtype_info(code)
    a = _uints(new, info.itemsize, "delta_encode new")
    r = _uints(ref, info.itemsize, "delta_encode ref")
    if a.shape != r.shape:
        raise UsageError(f"delta_encode: {a.size} elements against a reference of {r.size}")
    if info.kind == "float":
        d = to_ordered(a)
        d -= to_ordered(r)
    else:
        d = a - r
    return zigzag(d).tobytes()


def _ordered(buf: Buffer, info: Any, what: str) -> UArray:
    u = _uints(buf, info.itemsize, what)
    return to_ordered(u) if info.kind == "float" else u


def extrap_encode(new: Buffer, ref: Buffer, ref2: Buffer, code: str, k: int = 1) -> bytes:
    """Residual of ``new`` against the linear extrapolation ``ref + k*(ref - ref2)``.

    ref is the parent, ref2 the grandparent. Optimizers with momentum and weight decay
    move most weights by similar steps between checkpoints (and exactly so for rows
    that get no gradient, like unseen tokens' embeddings), so predicting the next step
    from the last one leaves a smaller residual than the plain delta; k > 1 when the
    reference is several checkpoints back (bounded chains). Computed in the
    order-preserving integer domain with wrapping arithmetic: exact whatever the bits."""
    info = dtype_info(code)
    a = _ordered(new, info, "extrap_encode new")
    b = _ordered(ref, info, "extrap_encode ref")
    c = _ordered(ref2, info, "extrap_encode ref2")
    if not a.shape == b.shape == c.shape:
        raise UsageError("extrap_encode: new, ref and ref2 differ in length")
    step = b - c
    step *= step.dtype.type(k)
    d = a - b
    d -= step
    return zigzag(d).tobytes()


def delta_decode(d: Buffer | npt.NDArray[Any], ref: Buffer, code: str) -> bytes:
    """Inverse of delta_encode."""
    info = dtype_info(code)
    z = _uints(d, info.itemsize, "delta_decode delta")  # type: ignore[arg-type]
    r = _uints(ref, info.itemsize, "delta_decode ref")
    if z.shape != r.shape:
        raise UsageError(f"delta_decode: {z.size} elements against a reference of {r.size}")
    # A fresh writable array (from the plane merge) is reused in place: one pass fewer.
    x = unzigzag_inplace(z) if isinstance(d, np.ndarray) and d.flags.writeable else unzigzag(z)
    if info.kind == "float":
        x += to_ordered(r)
        return from_ordered(x).tobytes()
    x += r
    return x.tobytes()
