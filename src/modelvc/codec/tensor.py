"""The tensor object format: blocks of encoded elements, then a JSON footer.

Layout (streamable: written front to back, the header comes last)::

    b"MVT1" | block payload 0 | block payload 1 | ... | footer JSON (utf-8)
            | footer length (u32 LE) | b"MVT1"

Block i holds elements [i*B, min(n, (i+1)*B)) with B = block_elements, so the
blocks of two objects with the same element count line up and a delta chain
decodes block by block. A 0-element tensor has one empty block.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from modelvc.codec.block import MODES, REF_MODES, decode_block, encode_block
from modelvc.codec.cast import can_cast_predict
from modelvc.codec.dtypes import DTYPES, Buffer, dtype_info
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

BLOCK_ELEMENTS = 1 << 20
MAGIC = b"MVT1"
_TAIL = struct.Struct("<I4s")  # footer length, closing magic


def block_spans(n_elements: int, block_elements: int = BLOCK_ELEMENTS) -> list[tuple[int, int]]:
    """Element ranges [start, stop) of each block; one empty block for n == 0."""
    if block_elements < 1:
        raise UsageError(f"block_elements must be positive, not {block_elements}")
    count = max(1, -(-n_elements // block_elements))
    return [(i * block_elements, min(n_elements, (i + 1) * block_elements)) for i in range(count)]


@dataclass(frozen=True)
class BlockInfo:
    """Where one encoded block sits in the object and how to decode it."""

    mode: str
    offset: int
    length: int
    elements: int


@dataclass(frozen=True)
class TensorHeader:
    """What the footer of a tensor object records."""

    dtype: str
    shape: tuple[int, ...]
    raw_size: int
    ref: str | None
    ref_dtype: str | None
    block_elements: int
    blocks: tuple[BlockInfo, ...]

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def codec(self) -> str:
        """One word for the block modes: "planes", "delta", "cast" or "mixed"."""
        modes = {b.mode for b in self.blocks}
        if modes == {"full"}:
            return "planes"
        if modes <= {"delta", "same"}:
            return "delta"
        if modes == {"cast"}:
            return "cast"
        return "mixed"

    def to_json(self) -> bytes:
        doc = {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "raw_size": self.raw_size,
            "ref": self.ref,
            "ref_dtype": self.ref_dtype,
            "block_elements": self.block_elements,
            "blocks": [[b.mode, b.offset, b.length, b.elements] for b in self.blocks],
        }
        return json.dumps(doc, separators=(",", ":")).encode()


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
        if mode in ("delta", "same") and self._ref_code != self._code:
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
        self._out.write(_TAIL.pack(len(footer), MAGIC))
        self._header = header
        return header


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptObject(f"tensor object footer: {what} is not a non-negative int")
    return value


def _parse_footer(data: bytes, body_end: int) -> TensorHeader:
    """Decode and cross-check the footer; body_end is where the block payloads must end."""
    try:
        doc = json.loads(data.decode("utf-8"))
        dtype, ref, ref_dtype = doc["dtype"], doc["ref"], doc["ref_dtype"]
        shape = tuple(_int(d, "a dimension") for d in doc["shape"])
        raw_size = _int(doc["raw_size"], "raw_size")
        block_elements = _int(doc["block_elements"], "block_elements")
        blocks = tuple(
            BlockInfo(m, _int(o, "offset"), _int(n, "length"), _int(e, "elements"))
            for m, o, n, e in doc["blocks"]
        )
    except CorruptObject:
        raise
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(f"tensor object footer is not valid: {exc}") from exc
    if dtype not in DTYPES or (ref_dtype is not None and ref_dtype not in DTYPES):
        raise CorruptObject(f"tensor object footer: unknown dtype {dtype!r} / {ref_dtype!r}")
    if not (ref is None or isinstance(ref, str)) or (ref is None) != (ref_dtype is None):
        raise CorruptObject("tensor object footer: ref and ref_dtype disagree")
    n = math.prod(shape)
    if raw_size != n * DTYPES[dtype].itemsize or block_elements < 1:
        raise CorruptObject("tensor object footer: raw_size/block_elements do not match shape")
    spans = block_spans(n, block_elements)
    if len(blocks) != len(spans):
        raise CorruptObject(f"tensor object footer: {len(blocks)} blocks, expected {len(spans)}")
    offset = len(MAGIC)
    for block, (start, stop) in zip(blocks, spans, strict=True):
        if block.mode not in MODES or block.offset != offset or block.elements != stop - start:
            raise CorruptObject(f"tensor object footer: bad block entry {block}")
        if block.mode in REF_MODES and ref is None:
            raise CorruptObject(f"tensor object footer: a {block.mode!r} block without a ref")
        offset += block.length
    if offset != body_end:
        raise CorruptObject(f"tensor object: blocks end at {offset}, footer starts at {body_end}")
    return TensorHeader(dtype, shape, raw_size, ref, ref_dtype, block_elements, blocks)


def read_header(size: int, read_range: Callable[[int, int], bytes]) -> TensorHeader:
    """Read the header of a ``size``-byte object through ``read_range(offset, length)``."""
    if size < len(MAGIC) + _TAIL.size:
        raise CorruptObject(f"tensor object of {size} bytes is too short")
    tail = read_range(size - _TAIL.size, _TAIL.size)
    if len(tail) != _TAIL.size:
        raise CorruptObject("tensor object: short read of the trailer")
    footer_len, magic = _TAIL.unpack(tail)
    if magic != MAGIC:
        raise CorruptObject(f"not a tensor object (trailer magic {magic!r})")
    body_end = size - _TAIL.size - footer_len
    if body_end < len(MAGIC):
        raise CorruptObject(f"tensor object: footer length {footer_len} exceeds the object")
    footer = read_range(body_end, footer_len)
    if len(footer) != footer_len:
        raise CorruptObject("tensor object: short read of the footer")
    return _parse_footer(footer, body_end)


def read_header_bytes(obj: Buffer) -> TensorHeader:
    """read_header for an object held in memory (also checks the leading magic)."""
    view = memoryview(obj).cast("B")
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise CorruptObject("not a tensor object (bad leading magic)")
    return read_header(len(view), lambda off, n: bytes(view[off : off + n]))


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


def decode_tensor(obj: Buffer, *, ref: Buffer | None = None) -> bytes:
    """Decode a whole in-memory tensor object; ``ref`` is the decoded reference tensor."""
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
    parts: list[bytes] = []
    for i, block in enumerate(header.blocks):
        start = i * header.block_elements
        block_ref = None
        if ref_view is not None and block.mode != "full":
            block_ref = ref_view[start * ref_size : (start + block.elements) * ref_size]
        payload = view[block.offset : block.offset + block.length]
        parts.append(
            decode_block(
                block.mode,
                payload,
                header.dtype,
                block.elements,
                ref=block_ref,
                ref_code=header.ref_dtype,
            )
        )
    return b"".join(parts)
