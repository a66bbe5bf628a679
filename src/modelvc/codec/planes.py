"""Byte-plane split/merge + zstd: the "full copy" representation of a block.

Element bytes are regrouped so that byte k of every element sits together
(plane k). For floats the exponent plane is highly repetitive and compresses
well while the low mantissa planes are near-random; those are stored raw so
decoding them is a memcpy.

Payload layout (self-delimiting, all integers little-endian)::

    u8 itemsize | u8 raw-plane bitmask | u32 length x itemsize | plane bytes...
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from modelvc.codec import kernels
from modelvc.codec.buffers import POOL, Bytes
from modelvc.codec.dtypes import Buffer
from modelvc.codec.zstd_ctx import compressor, decompress_exact, decompress_into
from modelvc.errors import CorruptObject, UsageError

# A plane is stored raw unless zstd saves at least this fraction of it.
MIN_SAVING = 0.02
_MAX_PLANE = (1 << 32) - 1


# Planes larger than 4x this are first tried on a sample: random mantissa bytes (most of
# an fp32 tensor) are then stored raw without spending a full zstd pass on them.
SAMPLE = 64 << 10


def _incompressible(ctx: Any, plane: memoryview) -> bool:
    mid = len(plane) // 2
    sample = plane[mid : mid + SAMPLE]
    return len(ctx.compress(sample)) >= len(sample) * (1.0 - MIN_SAVING)


def _header_size(itemsize: int) -> int:
    return 2 + 4 * itemsize


def plane_views(out: Bytes, itemsize: int) -> list[memoryview]:
    """Plane b of a split buffer is out[b*n:(b+1)*n]."""
    view = memoryview(out)
    n = view.nbytes // itemsize
    return [view[b * n : (b + 1) * n] for b in range(itemsize)]


def compress_planes(buf: Buffer, itemsize: int, level: int = 1) -> bytes:
    """Split ``buf`` (elements of ``itemsize`` bytes) into byte planes and zstd each one."""
    if itemsize not in (1, 2, 4, 8):
        raise UsageError(f"byte planes need an itemsize of 1, 2, 4 or 8, not {itemsize}")
    size = memoryview(buf).nbytes
    if size % itemsize:
        raise UsageError(f"{size} bytes is not a whole number of {itemsize}-byte elements")
    n = size // itemsize
    if n > _MAX_PLANE:
        raise UsageError(f"{n} elements is too many for one block of byte planes")
    if itemsize == 1:
        return compress_split([memoryview(buf).cast("B")], 1, n, level)
    lease = POOL.take(size)  # the payload copies the planes: the memory is reused
    try:
        out = lease[:size]
        kernels.split(out, buf, itemsize)
        return compress_split(plane_views(out, itemsize), itemsize, n, level)
    finally:
        POOL.give(lease)


def compress_split(planes: list[memoryview], itemsize: int, n: int, level: int = 1) -> bytes:
    """compress_planes for planes already split (codec.kernels.split / residual)."""
    ctx = compressor(level)
    chunks: list[Buffer] = []
    lengths: list[int] = []
    raw_mask = 0
    for k, plane in enumerate(planes):
        if n > 4 * SAMPLE and _incompressible(ctx, plane):
            packed: Buffer = plane
        else:
            packed = ctx.compress(plane) if n else b""
        if len(packed) >= n * (1.0 - MIN_SAVING):  # also catches n == 0
            raw_mask |= 1 << k
            packed = plane
        chunks.append(packed)
        lengths.append(len(packed))
    header = struct.pack(f"<BB{itemsize}I", itemsize, raw_mask, *lengths)
    return b"".join([header, *chunks])


def decompress_planes(payload: Buffer, itemsize: int, n: int) -> memoryview:
    """Inverse of compress_planes for ``n`` elements (read-only); CorruptObject if it
    does not fit."""
    planes = decompress_to_planes(payload, itemsize, n)
    if itemsize == 1:
        return memoryview(planes[0]).toreadonly()
    out = kernels.empty(n * itemsize)
    kernels.merge(out, planes)
    return memoryview(out).toreadonly()


def decompress_planes_array(payload: Buffer, itemsize: int, n: int) -> Any:
    """decompress_planes as an array of unsigned ints (saves a copy for delta decoding)."""
    return merge_planes(decompress_to_planes(payload, itemsize, n), itemsize, n)


def decompress_to_planes(payload: Buffer, itemsize: int, n: int,
                         scratch: Callable[[int], memoryview] | None = None, *,
                         checksum: bool = True) -> list[Buffer]:
    """The byte planes of a payload (raw planes as views, zstd ones decompressed, into
    scratch(n) buffers when given; checksum: see zstd_ctx.decompress_into)."""
    view = memoryview(payload).cast("B")
    head = _header_size(itemsize)
    if len(view) < head or view[0] != itemsize:
        raise CorruptObject(f"byte-plane payload: bad header for {itemsize}-byte elements")
    raw_mask = view[1]
    lengths = struct.unpack_from(f"<{itemsize}I", view, 2)
    if head + sum(lengths) != len(view):
        raise CorruptObject(
            f"byte-plane payload: planes need {head + sum(lengths)} bytes, have {len(view)}"
        )
    if raw_mask >> itemsize:
        raise CorruptObject("byte-plane payload: raw flag set on a plane that does not exist")
    planes: list[Buffer] = []
    pos = head
    for k, length in enumerate(lengths):
        chunk = view[pos : pos + length]
        pos += length
        if raw_mask >> k & 1:
            if length != n:
                raise CorruptObject(f"byte-plane payload: raw plane {k} has {length} bytes != {n}")
            planes.append(chunk)
        elif scratch is not None:
            buf = scratch(n)
            decompress_into(chunk, buf, f"byte plane {k}", checksum=checksum)
            planes.append(buf)
        else:
            planes.append(decompress_exact(chunk, n, f"byte plane {k}"))
    return planes


@contextmanager
def scratch_buffers() -> Iterator[Callable[[int], memoryview]]:
    """take(n) -> an n-byte buffer, valid until the block ends (codec.buffers pool).

    Decoding a block through a delta chain decompresses a dozen planes that live only
    until the kernel has summed them; reusing the same memory for them each time
    spares the page faults that fresh buffers cost (~2 ms per MB on this class of VM,
    more than decoding them)."""
    taken: list[Bytes] = []

    def take(n: int) -> memoryview:
        buf = POOL.take(n)
        taken.append(buf)
        return memoryview(buf)[:n]

    try:
        yield take
    finally:
        for buf in taken:
            POOL.give(buf)


def merge_planes(planes: list[Buffer], itemsize: int, n: int) -> Any:
    """Interleave byte planes back into elements: a numpy array of unsigned ints
    (little-endian), for the numpy decode paths.

    The stored order is little-endian; the array is too (numpy reads it as such)."""
    import numpy as np

    from modelvc.codec.npdtypes import UINT_BY_SIZE

    if itemsize == 1:
        return np.frombuffer(planes[0], dtype=np.uint8)
    out = kernels.empty(n * itemsize)
    kernels.merge(out, planes)
    return np.frombuffer(out, dtype=np.dtype(UINT_BY_SIZE[itemsize]).newbyteorder("<"))
