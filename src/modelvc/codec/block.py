"""The block codec: one block of up to BLOCK_ELEMENTS elements <-> (mode, payload).

Modes:
    full   byte planes of the raw bytes (needs no reference)
    delta  byte planes of delta_encode(raw, ref block), same dtype
    cast   byte planes of delta_encode(raw, cast_predict(ref block)), narrower dtype
    same   the block equals the ref block byte for byte; empty payload
    extrap u8 k | byte planes of the residual against ref + k*(ref - ref2)
    gdelta, gextrap
           delta / extrap of a float block with the residual's elements grouped by
           the reference element's exponent field (format 2, codec.groups): an
           optimizer moves weights by similar amounts, so a residual's size in the
           integer domain scales with 1/ulp of the weight; grouped, each zstd block
           sees one scale (MiniLM fine-tunes: 7-10 % smaller deltas)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from modelvc.codec import groups, kernels
from modelvc.codec.buffers import POOL
from modelvc.codec.cast import can_cast_predict, cast_predict
from modelvc.codec.dtypes import Buffer, dtype_info
from modelvc.codec.groups import group_shift, grouped_residual, parse_groups, ungroup
from modelvc.codec.planes import (
    compress_planes,
    compress_split,
    decompress_planes,
    decompress_planes_array,
    decompress_to_planes,
    plane_views,
    scratch_buffers,
)
from modelvc.errors import CorruptObject, UsageError

MODES = ("full", "delta", "cast", "same", "extrap", "gdelta", "gextrap")
REF_MODES = frozenset({"delta", "cast", "same", "extrap", "gdelta", "gextrap"})
# Modes whose decoded block differs from the reference's by a plain integer step: a
# run of them decodes in one pass, and an "extrap" block may follow one of them.
STEP_MODES = frozenset({"delta", "same", "extrap", "gdelta", "gextrap"})
# Modes that need the reference's own reference block (its last step).
EXTRAP_MODES = frozenset({"extrap", "gextrap"})
# How much of a block picks between delta and extrap and which step multiple: five or
# six trial encodes of the sample per block (at 32K elements a third of a MiniLM
# checkpoint's encode; at 8K its checkpoints store 0.04 % more: docs/benchmarks.md).
EXTRAP_SAMPLE = 1 << 13
SAMPLE_ELEMENTS = 1 << 15  # how much of a block picks whether to group, in
SAMPLE_SLICES = 8  # slices spread over the block
# The largest step multiple an "extrap" block holds (decoders accept 1..16), and the
# elements whose step ratio guesses a multiple past the four tried on every block.
MAX_STEP_MULTIPLE = 16
_RATIO_ELEMENTS = 4096

# Float weights stored "full" typically compress to 65-90% of raw. A delta payload
# under 60% of raw is therefore almost surely smaller than a full copy, and
# computing the full copy would only cost time; above it we try both.
FULL_RETRY_RATIO = 0.6


def _nbytes(buf: Buffer) -> int:
    return memoryview(buf).nbytes


EQUAL_HEAD = 4096  # bytes compared first: a block a fine-tune changed differs early


def _equal(a: Buffer, b: Buffer) -> bool:
    if isinstance(a, bytes) and isinstance(b, bytes):
        return a == b  # memcmp
    ma, mb = memoryview(a).cast("B"), memoryview(b).cast("B")
    if ma.nbytes != mb.nbytes or bytes(ma[:EQUAL_HEAD]) != bytes(mb[:EQUAL_HEAD]):
        return False  # a block a fine-tune changed is told apart without a whole
        # compare (a delta commit compared every changed block whole: ~4 % of its CPU)
    # memoryview == memoryview compares element by element in Python: far slower.
    return bool(kernels.equal(ma, mb))


def encode_block(
    raw: Buffer,
    code: str,
    *,
    ref: Buffer | None = None,
    ref_code: str | None = None,
    ref2: Buffer | None = None,
    level: int = 1,
    predicted: bool = False,
) -> tuple[str, bytes]:
    """Encode one block; with a reference block, as a delta/cast/same when that is smaller.

    ``ref2`` (the reference's own reference block, same dtype) enables "extrap": the
    residual against ``2*ref - ref2``, chosen over "delta" when a sample says smaller.

    ``predicted``: ``ref`` is already the cast prediction from a ``ref_code`` block
    (in ``code``), as ObjectIO.bf16_prediction makes it; the block is a 'cast' one.

    ``ref_code`` defaults to ``code``. A reference whose dtype cannot predict this
    one (e.g. I64 for an F32 tensor) is ignored and the block is stored "full", so
    callers may pass the parent's tensor without checking dtypes first.
    """
    itemsize = dtype_info(code).itemsize
    size = _nbytes(raw)
    if size % itemsize:
        raise UsageError(f"block of {size} bytes is not a whole number of {code} elements")
    n = size // itemsize
    ref_code = code if ref_code is None else ref_code
    if ref is None or (ref_code != code and not can_cast_predict(ref_code, code)):
        return "full", compress_planes(raw, itemsize, level)

    expected = n * dtype_info(code if predicted else ref_code).itemsize
    if _nbytes(ref) != expected:
        raise UsageError(
            f"reference block has {_nbytes(ref)} bytes, expected {expected} ({n} {ref_code})"
        )
    if ref_code == code:
        if _equal(raw, ref):
            return "same", b""
        k = _extrap_factor(raw, ref, ref2, code) if (
            ref2 is not None and _nbytes(ref2) == size) else 0
        g = "g" if groups.use_groups(code, n) and _groups_pay(raw, ref, ref2, k, code) else ""
        packed = _residual(raw, ref, ref2, k, code, level, grouped=bool(g))
        if k:
            return _or_full(raw, itemsize, level, size, g + "extrap", bytes([k]) + packed)
        return _or_full(raw, itemsize, level, size, g + "delta", packed)
    pred = ref if predicted else cast_predict(ref, ref_code, code)
    packed = _residual(raw, pred, None, 0, code, level)
    return _or_full(raw, itemsize, level, size, "cast", packed)


def _residual(raw: Buffer, ref: Buffer, ref2: Buffer | None, k: int, code: str,
              level: int, *, grouped: bool = False) -> bytes:
    """Compressed planes of zigzag(raw - ref [- k*(ref - ref2)]) (codec.kernels);
    grouped: the groups section, then the planes reordered by ref's groups."""
    info = dtype_info(code)
    size = _nbytes(raw)
    lease = POOL.take(size)  # the planes are copied into the payload: reuse the memory
    try:
        out = lease[:size]
        kernels.residual(out, raw, ref, ref2, k, info.itemsize, info.kind == "float")
        if grouped:
            return grouped_residual(out, ref, code, level)
        return compress_split(plane_views(out, info.itemsize), info.itemsize,
                              size // info.itemsize, level)
    finally:
        POOL.give(lease)


def _groups_pay(raw: Buffer, ref: Buffer, ref2: Buffer | None, k: int, code: str) -> bool:
    """Whether grouping shrinks the residual, judged on slices from across the block
    (an embedding table's moved and unmoved rows both show). It does where weights of
    many scales all moved (fine-tunes: 5-10 %); it does not where most elements did not
    move (sparse embedding rows: zstd's long runs of zeros break up)."""
    w = dtype_info(code).itemsize
    n = _nbytes(raw) // w
    step = n // SAMPLE_SLICES
    span = min(step, SAMPLE_ELEMENTS // SAMPLE_SLICES) * w
    cuts = [slice(i * step * w, i * step * w + span) for i in range(SAMPLE_SLICES)]
    srcs = (raw, ref, ref2) if (k and ref2 is not None) else (raw, ref)
    views = [memoryview(x).cast("B") for x in srcs]
    r, a, *rest = (b"".join(v[c] for c in cuts) for v in views)
    b = rest[0] if rest else None
    plain = len(_residual(r, a, b, k, code, 1))
    return len(_residual(r, a, b, k, code, 1, grouped=True)) < plain


def _or_full(raw: Buffer, itemsize: int, level: int, size: int, mode: str,
             payload: bytes) -> tuple[str, bytes]:
    if len(payload) > FULL_RETRY_RATIO * size:
        full = compress_planes(raw, itemsize, level)
        if len(full) <= len(payload):  # ties: full decodes faster and needs no ref
            return "full", full
    return mode, payload


def _extrap_factor(raw: Buffer, ref: Buffer, ref2: Buffer, code: str) -> int:
    """The step multiple k (1-4) whose residual on a slice from the middle compresses
    best, or 0 when the plain delta is as good (extrap makes decoding need ref2).

    Every k is tried: the sizes are not unimodal in k. A reference three checkpoints
    back (a sibling at the chain bound) with ref2 one further: rows that only decay
    compress alike at k = 1 and 2 (a few bits each) and to nothing at k = 3."""
    itemsize = dtype_info(code).itemsize
    n = _nbytes(raw) // itemsize
    lo = max(0, n // 2 - EXTRAP_SAMPLE // 2) * itemsize
    hi = min(n, lo // itemsize + EXTRAP_SAMPLE) * itemsize
    r, a, b = (memoryview(x).cast("B")[lo:hi] for x in (raw, ref, ref2))
    best, best_k = 0.97 * len(_residual(r, a, None, 0, code, 1)), 0
    for k in (1, 2, 3, 4):
        size = len(_residual(r, a, b, k, code, 1))
        if size < best:
            best, best_k = size, k
    guess = _step_ratio(r, a, b, code)
    if 4 < guess <= MAX_STEP_MULTIPLE and len(_residual(r, a, b, guess, code, 1)) < best:
        best_k = guess
    return best_k


def _step_ratio(raw: Buffer, ref: Buffer, ref2: Buffer, code: str) -> int:
    """The median of (raw - ref) / (ref - ref2) over elements that moved, rounded: the
    step multiple of a reference k checkpoints back. Siblings at the chain bound delta
    against one ancestor at growing distances (the 7th checkpoint of a run 5 back), and
    rows that only decay extrapolate exactly at k = that distance, past the four tried."""
    info = dtype_info(code)
    cut = _RATIO_ELEMENTS * info.itemsize
    x, y, z = (memoryview(v).cast("B")[:cut] for v in (raw, ref, ref2))
    ratio = kernels.step_ratio(x, y, z, info.itemsize, info.kind == "float")
    return round(ratio) if ratio is not None and math.isfinite(ratio) and 0 < ratio < 64 else 0


def decode_block(
    mode: str,
    payload: Buffer,
    code: str,
    n_elements: int,
    *,
    ref: Buffer | None = None,
    ref_code: str | None = None,
    ref2: Buffer | None = None,
) -> bytes | memoryview:
    """Inverse of encode_block (a read-only buffer); CorruptObject when the payload or
    reference does not fit."""
    itemsize = dtype_info(code).itemsize
    if mode == "full":
        return decompress_planes(payload, itemsize, n_elements)
    if mode not in REF_MODES:
        raise CorruptObject(f"unknown block mode {mode!r}")
    ref_code = code if ref_code is None else ref_code
    if ref is None:
        raise CorruptObject(f"a {mode!r} block needs its reference block, none was given")
    if mode == "cast":
        if not can_cast_predict(ref_code, code):
            raise CorruptObject(f"a 'cast' block cannot be predicted from {ref_code} to {code}")
    elif ref_code != code:
        raise CorruptObject(f"a {mode!r} block needs a {code} reference, not {ref_code}")
    expected = n_elements * dtype_info(ref_code).itemsize
    if _nbytes(ref) != expected:
        raise CorruptObject(f"reference block has {_nbytes(ref)} bytes, expected {expected}")
    if mode == "same":
        if _nbytes(payload):
            raise CorruptObject("a 'same' block must have an empty payload")
        return bytes(ref)
    if mode in EXTRAP_MODES:
        if ref2 is None or _nbytes(ref2) != expected:
            raise CorruptObject(f"an {mode!r} block needs its reference's reference block")
        return _decode_extrap(payload, ref, ref2, code, n_elements, mode == "gextrap")
    if mode in ("delta", "gdelta"):
        return decode_delta_run(ref, [(mode, payload)], code, n_elements)
    # "cast": the prediction, then one plain delta link on it
    return decode_delta_run(cast_predict(ref, ref_code, code), [("delta", payload)], code,
                            n_elements)


def _decode_extrap(payload: Buffer, ref: Buffer, ref2: Buffer, code: str, n: int,
                   grouped: bool) -> bytes:
    """One 'extrap' block on its own: ref + k*(ref - ref2) + residual, ordered domain."""
    import numpy as np  # decode_chain (the C kernels) decodes these in a chain

    from modelvc.codec.delta import from_ordered, to_ordered, unzigzag
    from modelvc.codec.npdtypes import UINT_BY_SIZE

    info = dtype_info(code)
    view = memoryview(payload).cast("B")
    if not len(view) or not 1 <= view[0] <= 16:
        raise CorruptObject("an 'extrap' block without its step multiple")
    k = view[0]
    dt = UINT_BY_SIZE[info.itemsize]
    body = view[1:]
    shift = group_shift(code)
    if grouped and shift is None:
        raise CorruptObject(f"a 'gextrap' block in a {code} tensor")
    if grouped:
        starts, body = parse_groups(body, n)
    z = decompress_planes_array(body, info.itemsize, n)
    if grouped:
        z = ungroup(z, ref, info.itemsize, shift or 0, starts)
    b = np.frombuffer(ref, dtype=dt)
    c = np.frombuffer(ref2, dtype=dt)
    if info.kind == "float":
        b, c = to_ordered(b), to_ordered(c)
    d = unzigzag(z)
    acc = b + d
    acc += (b - c) * dt.type(k)
    return (from_ordered(acc) if info.kind == "float" else acc).tobytes()


def decode_delta_run(base: Buffer, deltas: Sequence[tuple[str, Any]], code: str,
                     n_elements: int) -> memoryview:
    """Apply a run of same-dtype 'delta'/'same'/'extrap' blocks (oldest first) on `base`."""
    return decode_chain(code, n_elements, deltas, base=base)


def decode_chain(code: str, n_elements: int, deltas: Sequence[tuple[str, Any]], *,
                 base: Buffer | None = None, full: Buffer | None = None,
                 cast: Buffer | None = None, cast_planes: Sequence[Buffer] | None = None,
                 out: Any = None, checksum: bool = True) -> memoryview:
    """A block decoded through its chain in one pass (codec.kernels.run).

    The bottom is `base` (a decoded block) or `full` (the payload of a 'full' block);
    `deltas` are same-dtype 'delta'/'same'/'extrap' blocks oldest first, summed in the
    order-preserving integer domain (an 'extrap' link adds k times the previous link's
    step); `cast` is the payload of an F32 -> BF16 'cast' block on top, or `cast_planes`
    its two byte planes (zeros: the bare prediction); the result is then BF16. Planes
    live in pooled scratch memory; the result is a read-only view of `out` (a byte
    array at least as large) or of a fresh buffer. checksum=False: the caller checks
    the result against its object id (zstd_ctx.decompress_into)."""
    info = dtype_info(code)
    w = info.itemsize
    shift = group_shift(code)
    if (cast is not None or cast_planes is not None) and code != "F32":
        raise CorruptObject(f"a fused cast link needs an F32 chain, not {code}")
    with scratch_buffers() as take:
        bottom: Any
        if full is not None:
            bottom = decompress_to_planes(full, w, n_elements, take, checksum=checksum)
        elif base is not None and _nbytes(base) == n_elements * w:
            bottom = base
        else:
            got = _nbytes(base) if base is not None else 0
            raise CorruptObject(f"reference block has {got} bytes, expected {n_elements * w}")
        links: list[kernels.Link] = []
        for mode, payload in deltas:
            if mode == "same":
                if _nbytes(payload):
                    raise CorruptObject("a 'same' block must have an empty payload")
                links.append((0, None))
                continue
            if mode not in STEP_MODES:
                raise CorruptObject(f"decode_delta_run: unexpected block mode {mode!r}")
            k = 0
            if mode in EXTRAP_MODES:
                view = memoryview(payload).cast("B")
                if not links or not len(view) or not 1 <= view[0] <= 16:
                    raise CorruptObject(f"an {mode!r} block without its step or step multiple")
                k, payload = view[0], view[1:]
            if mode[0] == "g":
                if shift is None:
                    raise CorruptObject(f"a {mode!r} block in a {code} tensor")
                starts, payload = parse_groups(payload, n_elements)
                links.append((k, decompress_to_planes(payload, w, n_elements, take,
                                                      checksum=checksum), starts))
            else:
                links.append((k, decompress_to_planes(payload, w, n_elements, take,
                                                      checksum=checksum)))
        top: list[Buffer] | None = None
        if cast is not None:
            top = decompress_to_planes(cast, 2, n_elements, take, checksum=checksum)
        elif cast_planes is not None:
            top = list(cast_planes)
        size = n_elements * (2 if top is not None else w)
        dest = (kernels.empty(size) if out is None else out)[:size]
        try:
            kernels.run(dest, bottom, links, w, info.kind == "float", top, shift or 0)
        except ValueError as e:  # a grouped link whose groups do not fit its reference
            raise CorruptObject(str(e)) from e
    return memoryview(dest).toreadonly()
