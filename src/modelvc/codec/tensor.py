"""Tensor objects: the block writer and whole-tensor encode/decode.

The object layout and its footer live in modelvc.codec.header; the per-block
codec in modelvc.codec.block. This module ties them together and is the import
point for all three.
"""

from __future__ import annotations

import io
import math
from typing import BinaryIO

from modelvc.codec.block import (
    EXTRAP_MODES,
    MODES,
    REF_MODES,
    STEP_MODES,
    decode_block,
    encode_block,
)
from modelvc.codec.cast import can_cast_predict
from modelvc.codec.dtypes import DTYPES, Buffer, dtype_info
from modelvc.codec.header import (
    BLOCK_ELEMENTS,
    MAGIC,
    TAIL,
    BlockInfo,
    TensorHeader,
    block_spans,
    read_header,
    read_header_bytes,
)
from modelvc.errors import CorruptObject, UsageError

__all__ = [
    "BLOCK_ELEMENTS",
    "MAGIC",
    "BlockInfo",
    "TensorHeader",
    "TensorObjectWriter",
    "block_spans",
    "decode_block",
    "decode_tensor",
    "encode_block",
    "encode_tensor",
    "read_header",
    "read_header_bytes",
]


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise UsageError(f"a tensor shape is a tuple of non-negative ints, not {shape!r}")
    return tuple(shape)


class TensorObjectWriter:
    """Writes one tensor object to ``out`` block by block, in order.

    Encoding (encode_block) is separate so callers can encode blocks on a thread
    pool and hand the results here in order.
    """

    def __init__(
        self,
        out: BinaryIO,
        code: str,
        shape: tuple[int, ...],
        *,
        ref_id: str | None = None,
        ref_code: str | None = None,
        block_elements: int = BLOCK_ELEMENTS,
    ) -> None:
        self._itemsize = dtype_info(code).itemsize
        if ref_code is not None:
            dtype_info(ref_code)
        self._out = out
        self._code = code
        self._shape = _check_shape(shape)
        self._ref_id = ref_id
        self._ref_code = code if ref_code is None else ref_code
        self._block_elements = block_elements
        self._spans = block_spans(math.prod(self._shape), block_elements)
        self._blocks: list[BlockInfo] = []
        self._offset = len(MAGIC)
        self._header: TensorHeader | None = None
        out.write(MAGIC)

    def add_block(self, mode: str, payload: bytes) -> None:
        """Append the next block, as returned by encode_block."""
        if self._header is not None:
            raise UsageError("add_block after finish")
        if len(self._blocks) == len(self._spans):
            raise UsageError(f"a tensor of shape {self._shape} has only {len(self._spans)} blocks")
        if mode not in MODES:
            raise UsageError(f"unknown block mode {mode!r} (use one of {', '.join(MODES)})")
        if mode in REF_MODES and self._ref_id is None:
            raise UsageError(f"a {mode!r} block needs the writer to be given a ref_id")
        if mode == "cast" and not can_cast_predict(self._ref_code, self._code):
            raise UsageError(f"no cast prediction from {self._ref_code} to {self._code}")
        if mode in STEP_MODES and self._ref_code != self._code:
            raise UsageError(f"a {mode!r} block needs a {self._code} reference")
        if mode == "same" and payload:
            raise UsageError("a 'same' block has an empty payload")
        start, stop = self._spans[len(self._blocks)]
        self._out.write(payload)
        self._blocks.append(BlockInfo(mode, self._offset, len(payload), stop - start))
        self._offset += len(payload)

    def finish(self) -> TensorHeader:
        """Write the footer once every block is in; return the header it records."""
        if self._header is not None:
            return self._header
        if len(self._blocks) != len(self._spans):
            raise UsageError(f"{len(self._blocks)} of {len(self._spans)} blocks were added")
        uses_ref = any(b.mode in REF_MODES for b in self._blocks)
        header = TensorHeader(
            dtype=self._code,
            shape=self._shape,
            raw_size=math.prod(self._shape) * self._itemsize,
            ref=self._ref_id if uses_ref else None,
            ref_dtype=self._ref_code if uses_ref else None,
            block_elements=self._block_elements,
            blocks=tuple(self._blocks),
        )
        footer = header.to_json()
        self._out.write(footer)
        self._out.write(TAIL.pack(len(footer), MAGIC))
        self._header = header
        return header


def encode_tensor(
    raw: Buffer,
    code: str,
    shape: tuple[int, ...],
    *,
    ref: Buffer | None = None,
    ref_code: str | None = None,
    ref_id: str | None = None,
    level: int = 1,
    block_elements: int = BLOCK_ELEMENTS,
) -> bytes:
    """Encode a whole tensor in memory (tests, small tensors). ``ref`` is the raw reference."""
    itemsize = dtype_info(code).itemsize
    ref_size = dtype_info(code if ref_code is None else ref_code).itemsize
    n = math.prod(_check_shape(shape))
    if memoryview(raw).nbytes != n * itemsize:
        raise UsageError(f"{memoryview(raw).nbytes} bytes do not hold a {code} tensor of {shape}")
    if ref is not None and ref_id is None:
        raise UsageError("encode_tensor with a ref needs its ref_id")
    if ref is not None and memoryview(ref).nbytes != n * ref_size:
        raise UsageError(f"the reference does not hold {n} elements")
    sink = io.BytesIO()
    writer = TensorObjectWriter(
        sink, code, shape, ref_id=ref_id, ref_code=ref_code, block_elements=block_elements
    )
    raw_view = memoryview(raw).cast("B")
    ref_view = None if ref is None else memoryview(ref).cast("B")
    for start, stop in block_spans(n, block_elements):
        block_ref = None if ref_view is None else ref_view[start * ref_size : stop * ref_size]
        mode, payload = encode_block(
            raw_view[start * itemsize : stop * itemsize],
            code,
            ref=block_ref,
            ref_code=ref_code,
            level=level,
        )
        writer.add_block(mode, payload)
    writer.finish()
    return sink.getvalue()


def decode_tensor(obj: Buffer, *, ref: Buffer | None = None,
                  ref2: Buffer | None = None) -> bytes:
    """Decode a whole in-memory tensor object; ``ref`` is the decoded reference tensor
    (``ref2`` its own reference, needed by "extrap" blocks)."""
    header = read_header_bytes(obj)
    view = memoryview(obj).cast("B")
    ref_view = None if ref is None else memoryview(ref).cast("B")
    ref_size = DTYPES[header.ref_dtype or header.dtype].itemsize
    if (
        ref_view is not None
        and header.ref is not None
        and len(ref_view) != header.n_elements * ref_size
    ):
        raise CorruptObject(
            f"reference has {len(ref_view)} bytes, the object expects "
            f"{header.n_elements * ref_size}"
        )
    parts: list[bytes | memoryview] = []
    for i, block in enumerate(header.blocks):
        start = i * header.block_elements
        block_ref = block_ref2 = None
        if ref_view is not None and block.mode != "full":
            block_ref = ref_view[start * ref_size : (start + block.elements) * ref_size]
        if ref2 is not None and block.mode in EXTRAP_MODES:
            span = slice(start * ref_size, (start + block.elements) * ref_size)
            block_ref2 = memoryview(ref2).cast("B")[span]
        payload = view[block.offset : block.offset + block.length]
        parts.append(
            decode_block(
                block.mode,
                payload,
                header.dtype,
                block.elements,
                ref=block_ref,
                ref_code=header.ref_dtype,
                ref2=block_ref2,
            )
        )
    return b"".join(parts)
