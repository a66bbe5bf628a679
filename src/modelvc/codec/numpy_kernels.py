"""The codec's numpy kernels: the reference implementation of codec.kernels' jobs, and
the fallback where the C extension is not built (or MODELVC_PURE_CODEC=1). Imported
only then (and by the tests), so a command with the C kernels never imports numpy for
them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelvc.codec.chunked import (
    CHUNK,
    as_planes,
    from_ordered_into,
    merge_into,
    spans,
    to_ordered_into,
    unzigzag_into,
)
from modelvc.codec.npdtypes import INT_BY_SIZE, UINT_BY_SIZE

Buf = Any
Link = Any  # codec.kernels.Link (not imported: kernels imports this module)


def empty(nbytes: int) -> Any:
    return np.empty(nbytes, dtype=np.uint8)


def group_keys(ref: Any, itemsize: int, shift: int) -> Any:
    """The group of each element of ref (raw float bits): its exponent field."""
    u = _u(ref, itemsize)
    mag = u & u.dtype.type((1 << (8 * itemsize - 1)) - 1)
    return ((mag >> u.dtype.type(shift)) & u.dtype.type(0xFF)).astype(np.uint8)


def _le(itemsize: int) -> np.dtype[Any]:
    # Stored bytes are little-endian whatever the host's order.
    return np.dtype(UINT_BY_SIZE[itemsize]).newbyteorder("<")


def _u(buf: Any, itemsize: int) -> Any:
    return np.frombuffer(buf, dtype=_le(itemsize))


def _w(buf: Any, itemsize: int) -> Any:
    """A writable uint view of an output buffer."""
    return np.frombuffer(memoryview(buf).cast("B"), dtype=_le(itemsize))


class NumpyKernels:
    """The reference implementation (and the fallback): slice-by-slice numpy."""

    @staticmethod
    def merge(out: Buf, planes: Sequence[Buf]) -> None:
        w = len(planes)
        n = memoryview(planes[0]).nbytes
        o = _w(out, w)
        if w == 1:
            o[:] = np.frombuffer(planes[0], dtype=np.uint8)
            return
        tmp = np.empty(min(max(n, 1), CHUNK), dtype=o.dtype)
        arrays = as_planes(planes)
        for lo, hi in spans(n):
            merge_into(o[lo:hi], arrays, lo, hi, tmp)

    @staticmethod
    def split(out: Buf, src: Buf, itemsize: int) -> None:
        flat = np.frombuffer(src, dtype=np.uint8)
        o = np.frombuffer(memoryview(out).cast("B"), dtype=np.uint8)
        o.reshape(itemsize, -1)[:] = flat.reshape(-1, itemsize).T

    @staticmethod
    def residual(out: Buf, new: Buf, ref: Buf, ref2: Buf | None, k: int,
                 itemsize: int, is_float: bool) -> None:
        dt = UINT_BY_SIZE[itemsize]
        a, b = _u(new, itemsize), _u(ref, itemsize)
        c = _u(ref2, itemsize) if (k and ref2 is not None) else None
        n = a.size
        planes = np.frombuffer(memoryview(out).cast("B"), dtype=np.uint8).reshape(itemsize, n)
        size = min(max(n, 1), CHUNK)
        o, t, u, v = (np.empty(size, dtype=dt) for _ in range(4))
        for lo, hi in spans(n):
            m = hi - lo
            om, tm, um, vm = o[:m], t[:m], u[:m], v[:m]
            np.copyto(om, a[lo:hi])
            np.copyto(tm, b[lo:hi])
            if is_float:
                to_ordered_into(om, um)
                to_ordered_into(tm, um)
            om -= tm
            if c is not None:  # minus k * (ref - ref2)
                np.copyto(um, c[lo:hi])
                if is_float:
                    to_ordered_into(um, vm)
                np.subtract(tm, um, out=tm)
                tm *= dt.type(k)
                om -= tm
            np.right_shift(om.view(INT_BY_SIZE[itemsize]), itemsize * 8 - 1,
                           out=um.view(INT_BY_SIZE[itemsize]))
            om <<= dt.type(1)
            om ^= um
            planes[:, lo:hi] = om.view(np.uint8).reshape(m, itemsize).T

    @staticmethod
    def group(out: Buf, src: Buf, ref: Buf, itemsize: int, shift: int, counts: Buf) -> None:
        keys = group_keys(ref, itemsize, shift)
        order = np.argsort(keys, kind="stable")
        planes = np.frombuffer(src, dtype=np.uint8).reshape(itemsize, -1)
        o = np.frombuffer(memoryview(out).cast("B"), dtype=np.uint8).reshape(itemsize, -1)
        o[:] = planes[:, order]
        _w(counts, 4)[:] = np.bincount(keys, minlength=256)

    @staticmethod
    def run(out: Buf, base: Buf, links: Sequence[Link], itemsize: int, is_float: bool,
            cast: Sequence[Buf] | None = None, shift: int = 0) -> None:
        if isinstance(base, list | tuple):  # a "full" block's planes
            merged = empty(len(base) * memoryview(base[0]).nbytes)
            NumpyKernels.merge(merged, base)
            base = merged
        if cast is not None:  # F32 run, then the BF16 cast link on top
            if (itemsize, is_float) != (4, True):
                raise ValueError("a cast link needs an F32 run")
            f32 = empty(memoryview(base).nbytes)
            NumpyKernels.run(f32, base, links, 4, True, None, shift)
            pred = empty(f32.size // 2)
            NumpyKernels.cast_bf16(pred, f32)
            NumpyKernels.run(out, pred, [(0, cast)], 2, True)
            return
        dt = UINT_BY_SIZE[itemsize]
        acc = _w(out, itemsize)
        acc[:] = _u(base, itemsize)
        n = acc.size
        if links and links[0][0]:
            raise ValueError("the first link of a run cannot extrapolate")
        size = min(max(n, 1), CHUNK)
        o, tmp = np.empty(size, dtype=dt), np.empty(size, dtype=dt)
        if is_float:
            for lo, hi in spans(n):
                to_ordered_into(acc[lo:hi], tmp)
        step: Any = 0  # the previous link's step
        for j, link in enumerate(links):
            k, planes = link[0], link[1]
            starts = link[2] if len(link) > 2 else None
            keep = j + 1 < len(links) and links[j + 1][0] != 0
            if planes is None:
                step = 0
                continue
            arrays = as_planes(planes)
            if starts is not None:  # back to element order: the groups of acc (the ref)
                if not is_float or itemsize < 2:
                    raise ValueError("only a float link with planes is grouped")
                arrays = _ungroup(arrays, acc, itemsize, shift, starts)
            new_step = np.empty(n, dtype=dt) if keep else None
            for lo, hi in spans(n):
                om = o[: hi - lo]
                merge_into(om, arrays, lo, hi, tmp)
                unzigzag_into(om, tmp)
                if k and isinstance(step, np.ndarray):
                    t = tmp[: hi - lo]
                    np.multiply(step[lo:hi], dt.type(k), out=t)
                    om += t
                acc[lo:hi] += om
                if new_step is not None:
                    new_step[lo:hi] = om
            step = new_step
        if is_float:
            for lo, hi in spans(n):
                from_ordered_into(acc[lo:hi], tmp)

    @staticmethod
    def step_ratio(new: Buf, ref: Buf, ref2: Buf, itemsize: int, is_float: bool
                   ) -> float | None:
        s = INT_BY_SIZE[itemsize]
        x, y, z = (_u(v, itemsize) for v in (new, ref, ref2))
        if is_float:
            x, y, z = (_ordered(v) for v in (x, y, z))
        step = (y - z).view(s)
        moved = step != 0
        if not moved.any():
            return None
        return float(np.median((x - y).view(s)[moved] / step[moved].astype(np.float64)))

    @staticmethod
    def cast_bf16(out: Buf, src: Buf) -> None:
        u = np.frombuffer(src, dtype=np.uint32)
        odd = (u >> np.uint32(16)) & np.uint32(1)
        rounded = (u + np.uint32(0x7FFF) + odd) >> np.uint32(16)  # finite values never wrap
        nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
        quiet = (u >> np.uint32(16)) | np.uint32(0x0040)  # top payload bits kept, quieted
        _w(out, 2)[:] = np.where(nan, quiet, rounded).astype(np.uint16)


def _ordered(u: Any) -> Any:
    """A new array of u in the order-preserving domain (codec.delta.to_ordered)."""
    out = u.copy()
    to_ordered_into(out, np.empty_like(out))
    return out


def _ungroup(arrays: Any, acc: Any, itemsize: int, shift: int, starts: Buf) -> Any:
    """A grouped link's planes in element order; acc holds the reference, ordered."""
    ref = acc.copy()
    from_ordered_into(ref, np.empty_like(ref))
    keys = group_keys(ref, itemsize, shift)
    first = np.frombuffer(starts, dtype=np.uint32).astype(np.int64)
    counts = np.bincount(keys, minlength=256)
    if not np.array_equal(first, np.concatenate([[0], np.cumsum(counts)[:-1]])):
        raise ValueError("a grouped link's groups do not fit its reference")
    order = np.argsort(keys, kind="stable")
    out = []
    for a in arrays:
        nat = np.empty_like(a)
        nat[order] = a
        out.append(nat)
    return out
