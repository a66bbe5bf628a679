"""Cache-sized element-wise kernels for the decode hot path.

numpy runs each operation over the whole array before the next one starts; on 4 MiB
blocks every pass streams through memory. Running the same passes over 64 Ki-element
slices keeps them in L2 and measured ~4.7x faster for a delta link (plane merge,
zigzag decode, add). Every function here is exact integer arithmetic (wrapping).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelvc.codec.dtypes import Buffer
from modelvc.codec.npdtypes import INT_BY_SIZE

CHUNK = 1 << 16
Arr = npt.NDArray[Any]


def spans(n: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, CHUNK):
        yield lo, min(n, lo + CHUNK)


def merge_into(out: Arr, planes: Sequence[Arr], lo: int, hi: int, tmp: Arr) -> None:
    """out[:hi-lo] = the elements lo..hi interleaved from byte planes (little-endian)."""
    m = hi - lo
    o, t = out[:m], tmp[:m]
    np.copyto(o, planes[0][lo:hi], casting="unsafe")
    for k in range(1, len(planes)):
        np.copyto(t, planes[k][lo:hi], casting="unsafe")
        t <<= t.dtype.type(8 * k)
        o |= t


def unzigzag_into(o: Arr, tmp: Arr) -> None:
    """In place: zigzag code -> wrapped signed difference."""
    t = tmp[: o.size]
    np.bitwise_and(o, o.dtype.type(1), out=t)
    s = t.view(INT_BY_SIZE[o.dtype.itemsize])
    np.negative(s, out=s)
    o >>= o.dtype.type(1)
    o ^= t


def to_ordered_into(u: Arr, tmp: Arr) -> None:
    """In place: float bits -> order-preserving unsigned (see delta.to_ordered)."""
    bits = u.dtype.itemsize * 8
    t = tmp[: u.size]
    np.right_shift(u.view(INT_BY_SIZE[u.dtype.itemsize]), bits - 1,
                   out=t.view(INT_BY_SIZE[u.dtype.itemsize]))
    t |= u.dtype.type(1 << (bits - 1))
    u ^= t


def from_ordered_into(m: Arr, tmp: Arr) -> None:
    """In place: inverse of to_ordered_into."""
    bits = m.dtype.itemsize * 8
    t = tmp[: m.size]
    np.right_shift(m.view(INT_BY_SIZE[m.dtype.itemsize]), bits - 1,
                   out=t.view(INT_BY_SIZE[m.dtype.itemsize]))
    np.invert(t, out=t)
    t |= m.dtype.type(1 << (bits - 1))
    m ^= t


def as_planes(planes: Sequence[Buffer]) -> list[Arr]:
    return [np.frombuffer(p, dtype=np.uint8) for p in planes]
