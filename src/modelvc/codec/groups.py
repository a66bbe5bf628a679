"""Grouped residuals (block modes "gdelta", "gextrap"): elements ordered by the
reference element's exponent field before their byte planes are compressed.

An optimizer step moves a weight by an amount that hardly depends on the weight's
size, but the codec's residual is an integer count of ulps, and an ulp doubles with
each exponent: a residual's typical size is set by its reference's exponent. Stored
in element order the planes mix a dozen scales; grouped, zstd's per-block entropy
tables each see one. The decoder knows the reference, so the order costs only the
group sizes (a few hundred bytes per 1M-element block).

Payload (after the step multiple of "gextrap")::

    u16 m | m x u8 group | m x u32 size | byte planes (codec.planes) in group order
"""

from __future__ import annotations

import struct
from typing import Any

from modelvc.codec import kernels
from modelvc.codec.dtypes import Buffer, dtype_info
from modelvc.codec.planes import compress_split, plane_views
from modelvc.errors import CorruptObject

# The exponent field's lowest bit for the float dtypes that are grouped; the group is
# (|bits| >> shift) & 0xFF: F64 takes the low 8 bits of its 11-bit exponent, which
# still tells weights of different scales apart.
_SHIFTS = {"F16": 10, "BF16": 7, "F32": 23, "F64": 52}
# Smaller blocks are not grouped: the group sizes (~5 bytes per group) would outweigh
# the saving, and tensors under 16 KiB are stored whole anyway (storage.MIN_DELTA_BYTES).
GROUP_MIN_ELEMENTS = 4096


# Whether encoders write grouped blocks. Off since session 6 (docs/benchmarks.md, "codec
# format 2 at checkout"): grouped, MiniLM fine-tunes store 0.2795x instead of 0.2914x,
# but a checkout at a chain end spends 20-30 % more CPU un-grouping its three links
# (~0.9 ns per element and link), and issue 13 asks for no speed figure worse. Grouped
# blocks already stored decode either way; True writes them again.
WRITE_GROUPED = False


def use_groups(code: str, n: int) -> bool:
    """Whether an encoder groups the residual of an n-element block of this dtype."""
    return WRITE_GROUPED and code in _SHIFTS and n >= GROUP_MIN_ELEMENTS


def group_shift(code: str) -> int | None:
    """The group shift for a dtype, None where residuals are not grouped."""
    return _SHIFTS.get(code)


def grouped_residual(planes: Any, ref: Buffer, code: str, level: int) -> bytes:
    """The payload of a grouped residual from its planes in element order (a byte array
    of itemsize planes) and the reference block."""
    import numpy as np  # numpy only where grouped blocks are written or read

    w = dtype_info(code).itemsize
    size = memoryview(planes).nbytes
    n = size // w
    out = kernels.empty(size)
    counts = np.zeros(256, dtype="<u4")
    kernels.group(out, planes, ref, w, _SHIFTS[code], counts)
    used = np.flatnonzero(counts)
    head = struct.pack("<H", used.size) + used.astype(np.uint8).tobytes() + counts[
        used].tobytes()
    return head + compress_split(plane_views(out, w), w, n, level)


def parse_groups(payload: Buffer, n: int) -> tuple[bytes, memoryview]:
    """(each group's first position as 256 uint32, the planes payload)."""
    import numpy as np

    view = memoryview(payload).cast("B")
    if len(view) < 2:
        raise CorruptObject("a grouped block without its groups")
    (m,) = struct.unpack_from("<H", view)
    end = 2 + 5 * m
    if m > 256 or len(view) < end:
        raise CorruptObject("a grouped block's groups are cut short")
    keys = np.frombuffer(view[2 : 2 + m], dtype=np.uint8)
    sizes = np.frombuffer(view[2 + m : end], dtype="<u4").astype(np.int64)
    if m and (np.any(np.diff(keys.astype(np.int64)) <= 0) or int(sizes.sum()) != n):
        raise CorruptObject(f"a grouped block's groups do not add up to {n} elements")
    counts = np.zeros(256, dtype=np.int64)
    counts[keys] = sizes
    starts = np.zeros(256, dtype="<u4")
    starts[1:] = np.cumsum(counts)[:-1]
    return starts.tobytes(), view[end:]


def ungroup(z: Any, ref: Buffer, itemsize: int, shift: int, starts: bytes) -> Any:
    """Grouped residual elements (an array) back in element order, given the reference."""
    import numpy as np

    keys = kernels.group_keys(ref, itemsize, shift)
    counts = np.bincount(keys, minlength=256)
    first = np.zeros(256, dtype=np.int64)
    first[1:] = np.cumsum(counts)[:-1]
    if not np.array_equal(first, np.frombuffer(starts, dtype="<u4")):
        raise CorruptObject("a grouped block's groups do not fit its reference")
    out = np.empty_like(z)
    out[np.argsort(keys, kind="stable")] = z
    return out
