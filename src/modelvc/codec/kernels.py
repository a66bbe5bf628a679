"""The codec's element-wise hot loops: the C extension when built, numpy otherwise.

Five jobs, each over whole blocks and bit for bit the same in both implementations:

    merge(out, planes)                  interleave byte planes into elements
    split(out, src, itemsize)           elements -> byte planes (plane b at out[b*n:])
    residual(out, new, ref, ref2, k, itemsize, is_float)
                                        planes of zigzag(new - ref - k*(ref - ref2)),
                                        floats in the order-preserving domain
    run(out, base, links, itemsize, is_float, cast, shift)
                                        base + each link's unzigzagged planes (+ k times
                                        the previous link's step); links oldest first as
                                        (k, planes) or (k, planes, starts), planes None
                                        for an unchanged link; with starts (256 uint32,
                                        each group's first position) the link's elements
                                        are stored grouped (see group)
    group(out, src, ref, itemsize, shift, counts)
                                        src's byte planes reordered stably by the group
                                        of ref's elements: the float exponent field,
                                        (|bits| >> shift) & 0xFF; counts gets group sizes
    cast_bf16(out, src)                 F32 -> BF16 prediction (codec.cast)

The C versions (codec/_kernels.c) do each in one pass over cache-sized chunks without
the GIL; numpy needs a dozen passes. `pip install` builds the extension where a C
compiler is present; MODELVC_PURE_CODEC=1 forces the numpy versions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from modelvc.codec.chunked import (
    CHUNK,
    as_planes,
    from_ordered_into,
    merge_into,
    spans,
    to_ordered_into,
    unzigzag_into,
)
from modelvc.codec.dtypes import INT_BY_SIZE, UINT_BY_SIZE

# Anything exporting a contiguous byte buffer (bytes, memoryview, numpy arrays).
Buf = Any
# (k, planes) or (k, planes, group starts): see run.
Link = tuple[int, Sequence[Buf] | None] | tuple[int, Sequence[Buf] | None, Buf | None]
# What the extension's VERSION must be for this module to call it (codec/_kernels.c).
KERNELS_VERSION = 4
# Builds of these versions take the same arguments (version 4 un-groups faster); a build
# of version 3 took a grouped link's elements merged and is not called.
_SAME_CALLS = (2, KERNELS_VERSION)


def _load_native() -> ModuleType | None:
    if os.environ.get("MODELVC_PURE_CODEC"):
        return None
    try:
        from modelvc.codec import _kernels  # type: ignore[attr-defined]
    except ImportError:
        return None
    if getattr(_kernels, "VERSION", 1) not in _SAME_CALLS:  # a stale build: not called
        return None
    return _kernels  # type: ignore[no-any-return]


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
    def cast_bf16(out: Buf, src: Buf) -> None:
        u = np.frombuffer(src, dtype=np.uint32)
        odd = (u >> np.uint32(16)) & np.uint32(1)
        rounded = (u + np.uint32(0x7FFF) + odd) >> np.uint32(16)  # finite values never wrap
        nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
        quiet = (u >> np.uint32(16)) | np.uint32(0x0040)  # top payload bits kept, quieted
        _w(out, 2)[:] = np.where(nan, quiet, rounded).astype(np.uint16)


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


native = _load_native()
impl: Any = native if native is not None else NumpyKernels
NATIVE = native is not None


def empty(nbytes: int) -> npt.NDArray[np.uint8]:
    """An uninitialised output buffer (a numpy byte array: no zero-fill pass)."""
    return np.empty(nbytes, dtype=np.uint8)


def merge(out: Buf, planes: Sequence[Buf]) -> None:
    impl.merge(out, planes)


def split(out: Buf, src: Buf, itemsize: int) -> None:
    impl.split(out, src, itemsize)


def residual(out: Buf, new: Buf, ref: Buf, ref2: Buf | None, k: int,
             itemsize: int, is_float: bool) -> None:
    impl.residual(out, new, ref, ref2, k, itemsize, is_float)


def run(out: Buf, base: Buf, links: Sequence[Link], itemsize: int, is_float: bool,
        cast: Sequence[Buf] | None = None, shift: int = 0) -> None:
    """base: a buffer or a list of byte planes; cast: an F32 -> BF16 link's planes;
    shift: the exponent field's position, for grouped links."""
    impl.run(out, base, links, itemsize, is_float, cast, shift)


def group(out: Buf, src: Buf, ref: Buf, itemsize: int, shift: int, counts: Buf) -> None:
    impl.group(out, src, ref, itemsize, shift, counts)


def cast_bf16(out: Buf, src: Buf) -> None:
    impl.cast_bf16(out, src)
