"""Tensors and blobs on top of an object store: encode, dedup, delta chains, verified reads.

An object's id is the BLAKE3 of its *decoded* bytes, so identical tensors dedup for
free and every read is verified by re-hashing. Tensor objects may be deltas against
a reference object; chains are bounded in depth and accumulated stored size so any
version checks out in a few object reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import blake3

from .codec import (
    BLOCK_ELEMENTS,
    TensorHeader,
    TensorObjectWriter,
    decode_blob,
    decode_block,
    dtype_info,
    encode_blob,
    encode_block,
    read_header,
)
from .errors import CorruptObject
from .meta.api import ObjectRow
from .objects.base import ObjectStore

MAX_CHAIN_DEPTH = 3
# Reading a chain costs its stored bytes; past this multiple of the raw size a fresh
# full copy is cheaper to check out than one more link.
MAX_CHAIN_STORED = 4.0
# Predicting a low-precision export from its high-precision parent (cast delta).
CASTS = {("F32", "BF16"), ("F32", "F16"), ("F64", "F32"), ("F16", "BF16"), ("BF16", "F16")}


@dataclass(frozen=True)
class Stored:
    row: ObjectRow
    new: bool  # written by this call (False: deduplicated)


class _BytesSink:
    """A minimal binary sink collecting the writer's output."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, b: bytes) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class ObjectIO:
    """Encode/decode tensors and blobs against one ObjectStore. Thread-safe."""

    def __init__(self, store: ObjectStore, *, executor: Executor | None = None) -> None:
        self.store = store
        self.executor = executor  # for block-level parallelism inside big tensors
        self._headers: OrderedDict[str, TensorHeader] = OrderedDict()
        self._lock = threading.Lock()

    # ---- tensors
    def header(self, oid: str) -> TensorHeader:
        with self._lock:
            h = self._headers.get(oid)
        if h is not None:
            return h
        size = self.store.size(oid)
        h = read_header(size, lambda start, n: self.store.get_range(oid, start, n))
        with self._lock:
            self._headers[oid] = h
            while len(self._headers) > 4096:
                self._headers.popitem(last=False)
        return h

    def forget(self, oid: str) -> None:
        """Drop a cached header (after the object was re-encoded)."""
        with self._lock:
            self._headers.pop(oid, None)

    def chain_rows(self, oid: str) -> list[ObjectRow]:
        """Rows for the delta references of `oid` (so gc keeps them, rows or not)."""
        return [self._tensor_row(i) for i in self.chain(oid)[1:]]

    def chain(self, oid: str) -> list[str]:
        """The object and its delta references, nearest first."""
        out = [oid]
        seen = {oid}
        while (ref := self.header(out[-1]).ref) is not None:
            if ref in seen:
                raise CorruptObject(f"object {oid[:12]} has a cyclic delta chain")
            out.append(ref)
            seen.add(ref)
        return out

    def usable_ref(self, ref_id: str, dtype: str, numel: int) -> str | None:
        """The object to delta against, given the parent's same-named tensor.

        Walks the parent object's own chain and takes the nearest object whose depth
        leaves room for one more link, so chains never exceed MAX_CHAIN_DEPTH: once the
        parent is at the bound, new versions delta against its reference instead (their
        drift from it costs about half a bit per element per doubling of distance)."""
        try:
            ids = self.chain(ref_id)
        except Exception:
            return None
        for i, cand in enumerate(ids):
            depth = len(ids) - 1 - i  # links below cand
            if depth + 1 > MAX_CHAIN_DEPTH:
                continue
            h = self.header(cand)
            if _numel(h.shape) != numel or (h.dtype != dtype and (h.dtype, dtype) not in CASTS):
                continue
            stored = sum(self.store.size(x) for x in ids[i:])
            if stored <= MAX_CHAIN_STORED * max(h.raw_size, 1):
                return cand
        return None

    def put_tensor(
        self,
        raw: bytes | bytearray | memoryview,
        dtype: str,
        shape: tuple[int, ...],
        *,
        ref: str | None = None,
        oid: str | None = None,
    ) -> Stored:
        oid = oid or blake3.blake3(raw).hexdigest()
        if self.store.has(oid):
            return Stored(self._tensor_row(oid), False)
        numel = _numel(shape)
        ref = self.usable_ref(ref, dtype, numel) if ref else None
        ref_raw = self.read_tensor(ref) if ref else None
        ref_code = self.header(ref).dtype if ref else None
        size = dtype_info(dtype).itemsize
        rsize = dtype_info(ref_code).itemsize if ref_code else 0
        mv = memoryview(raw).cast("B")
        nblocks = max(1, -(-numel // BLOCK_ELEMENTS))

        def enc(i: int) -> tuple[str, bytes]:
            lo, hi = i * BLOCK_ELEMENTS, min(numel, (i + 1) * BLOCK_ELEMENTS)
            rb = None if ref_raw is None else memoryview(ref_raw)[lo * rsize : hi * rsize]
            return encode_block(mv[lo * size : hi * size], dtype, ref=rb, ref_code=ref_code)

        blocks = (
            list(self.executor.map(enc, range(nblocks)))
            if self.executor is not None and nblocks > 1
            else [enc(i) for i in range(nblocks)]
        )
        sink = _BytesSink()
        writer = TensorObjectWriter(sink, dtype, shape, ref_id=ref, ref_code=ref_code)  # type: ignore[arg-type]
        for mode, payload in blocks:
            writer.add_block(mode, payload)
        header = writer.finish()
        data = sink.getvalue()
        new = self.store.put(oid, data)
        with self._lock:
            self._headers[oid] = header
        row = ObjectRow(oid, "tensor", header.codec, header.raw_size, len(data), header.ref)
        return Stored(row, new)

    def _tensor_row(self, oid: str) -> ObjectRow:
        h = self.header(oid)
        return ObjectRow(oid, "tensor", h.codec, h.raw_size, self.store.size(oid), h.ref)

    def read_tensor(self, oid: str, *, verify: bool = True) -> bytes:
        """Decode a tensor object (following its delta chain) and check it against its id."""
        h = self.header(oid)
        ref_raw = self.read_tensor(h.ref, verify=False) if h.ref is not None else None
        ref_size = dtype_info(h.ref_dtype).itemsize if h.ref_dtype else 0
        size = dtype_info(h.dtype).itemsize
        obj = self.store.get(oid)

        def dec(i: int) -> bytes:
            b = h.blocks[i]
            lo = i * h.block_elements
            rb = None
            if ref_raw is not None:
                rb = memoryview(ref_raw)[lo * ref_size : (lo + b.elements) * ref_size]
            payload = obj[b.offset : b.offset + b.length]
            return decode_block(b.mode, payload, h.dtype, b.elements, ref=rb, ref_code=h.ref_dtype)

        n = len(h.blocks)
        if self.executor is not None and n > 1:
            parts = list(self.executor.map(dec, range(n)))
        else:
            parts = [dec(i) for i in range(n)]
        out = parts[0] if n == 1 else b"".join(parts)
        if len(out) != h.raw_size or len(out) != size * _numel(h.shape):
            raise CorruptObject(f"tensor object {oid[:12]} decodes to the wrong size")
        if verify and blake3.blake3(out).hexdigest() != oid:
            raise CorruptObject(f"tensor object {oid[:12]} does not match its id")
        return out

    # ---- blobs
    def put_blob(self, data: bytes | memoryview, *, oid: str | None = None) -> Stored:
        oid = oid or blake3.blake3(data).hexdigest()
        if self.store.has(oid):
            return Stored(ObjectRow(oid, "blob", "zstd", len(data), self.store.size(oid)), False)
        enc = encode_blob(bytes(data))
        new = self.store.put(oid, enc)
        return Stored(ObjectRow(oid, "blob", "zstd", len(data), len(enc)), new)

    def read_blob(self, oid: str, *, verify: bool = True) -> bytes:
        out = decode_blob(self.store.get(oid))
        if verify and blake3.blake3(out).hexdigest() != oid:
            raise CorruptObject(f"blob object {oid[:12]} does not match its id")
        return out

    def read_object(self, oid: str, is_tensor: bool, *, verify: bool = True) -> bytes:
        if is_tensor:
            return self.read_tensor(oid, verify=verify)
        return self.read_blob(oid, verify=verify)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


Reader = Callable[[int, int], bytes]
