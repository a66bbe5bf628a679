"""The tensor object footer (the header, stored last) and how to read it back.

Object layout (streamable: written front to back, the header comes last)::

    b"MVT1" | block payload 0 | block payload 1 | ... | footer JSON (utf-8)
            | footer length (u32 LE) | b"MVT1"

Block i holds elements [i*B, min(n, (i+1)*B)) with B = block_elements, so the
blocks of two objects with the same element count line up and a delta chain
decodes block by block. A 0-element tensor has one empty block.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelvc.codec.block import MODES, REF_MODES
from modelvc.codec.dtypes import DTYPES, Buffer
from modelvc.errors import CorruptObject, UsageError

BLOCK_ELEMENTS = 1 << 20
MAGIC = b"MVT1"
TAIL = struct.Struct("<I4s")  # footer length, closing magic


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
        """One word for the block modes: "planes", "delta", "extrap", "cast" or "mixed"."""
        modes = {b.mode for b in self.blocks}
        if modes == {"full"}:
            return "planes"
        if modes <= {"delta", "same", "gdelta"}:
            return "delta"
        if modes <= {"delta", "same", "extrap", "gdelta", "gextrap"}:
            return "extrap"
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


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptObject(f"tensor object footer: {what} is not a non-negative int")
    return value


def parse_footer(data: bytes, body_end: int) -> TensorHeader:
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
    count = max(1, -(-n // block_elements))  # checked first: the shape may be absurd
    if len(blocks) != count:
        raise CorruptObject(f"tensor object footer: {len(blocks)} blocks, expected {count}")
    offset = len(MAGIC)
    for block, (start, stop) in zip(blocks, block_spans(n, block_elements), strict=True):
        if block.mode not in MODES or block.offset != offset or block.elements != stop - start:
            raise CorruptObject(f"tensor object footer: bad block entry {block}")
        if block.mode in REF_MODES and ref is None:
            raise CorruptObject(f"tensor object footer: a {block.mode!r} block without a ref")
        offset += block.length
    if offset != body_end:
        raise CorruptObject(f"tensor object: blocks end at {offset}, footer starts at {body_end}")
    return TensorHeader(dtype, shape, raw_size, ref, ref_dtype, block_elements, blocks)


TAIL_GUESS = 8192  # bytes read from an object's end in the hope of its whole footer


def read_header(size: int, read_range: Callable[[int, int], bytes], *,
                tail_bytes: bytes = b"") -> TensorHeader:
    """Read the header of a ``size``-byte object through ``read_range(offset, length)``.

    ``tail_bytes``: the object's last bytes, already read (TAIL_GUESS of them hold the
    whole footer of most objects): the footer is then sliced from them, not re-read."""
    if size < len(MAGIC) + TAIL.size:
        raise CorruptObject(f"tensor object of {size} bytes is too short")
    if len(tail_bytes) > size:
        raise CorruptObject("tensor object: more trailing bytes than the object holds")

    def read(off: int, n: int) -> bytes:
        held = size - len(tail_bytes)
        if off >= held:
            return tail_bytes[off - held : off - held + n]
        return read_range(off, n)

    tail = read(size - TAIL.size, TAIL.size)
    if len(tail) != TAIL.size:
        raise CorruptObject("tensor object: short read of the trailer")
    footer_len, magic = TAIL.unpack(tail)
    if magic != MAGIC:
        raise CorruptObject(f"not a tensor object (trailer magic {magic!r})")
    body_end = size - TAIL.size - footer_len
    if body_end < len(MAGIC):
        raise CorruptObject(f"tensor object: footer length {footer_len} exceeds the object")
    footer = read(body_end, footer_len)
    if len(footer) != footer_len:
        raise CorruptObject("tensor object: short read of the footer")
    return parse_footer(footer, body_end)


def read_header_bytes(obj: Buffer) -> TensorHeader:
    """read_header for an object held in memory (also checks the leading magic)."""
    view = memoryview(obj).cast("B")
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise CorruptObject("not a tensor object (bad leading magic)")
    return read_header(len(view), lambda off, n: bytes(view[off : off + n]))
