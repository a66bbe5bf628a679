"""Reading tensor blocks through their delta chains (ObjectIO's read side).

A block of a tensor object is decoded by walking down its chain (`_walk`): the 'full'
block or a cached decoded block at the bottom, the same-dtype delta/extrap/same links
over it, and an export's cast link on top; `codec.decode_chain` then applies the whole
walk in one pass. Blocks of objects with the same element count line up, so the walk
is per block, never per tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .blockcache import BlockCache
from .codec import BLOCK_ELEMENTS, TensorHeader, decode_block, decode_chain, dtype_info, kernels
from .codec.block import EXTRAP_MODES, STEP_MODES
from .codec.buffers import POOL, Bytes
from .codec.header import BlockInfo
from .codec.planes import scratch_buffers
from .errors import CorruptObject
from .filecache import KnownFiles, Pending
from .objects.base import ObjectStore

_ZEROS = memoryview(bytes(BLOCK_ELEMENTS))


def span(h: TensorHeader) -> int:
    """Bytes per block of H's layout: the block cache's key with the id and block."""
    return h.block_elements * dtype_info(h.dtype).itemsize


class Walk(NamedTuple):
    """What decoding one block needs."""

    elements: int
    code: str  # the chain's dtype
    run: list[tuple[str, bytes | memoryview]]  # delta/extrap/same links, oldest first
    base: bytes | memoryview | None  # a decoded block at the bottom, or
    full: bytes | memoryview | None  # the payload of the 'full' block at the bottom
    cast: bytes | memoryview | None  # the payload of an F32 -> BF16 export's cast link


class BlockReader:
    """The decode walk, mixed into ObjectIO (which provides the attributes below)."""

    if TYPE_CHECKING:
        store: ObjectStore
        blocks: BlockCache
        known: KnownFiles | None

        def header(self, oid: str) -> TensorHeader: ...

        def chain(self, oid: str) -> list[str]: ...

    def decode_block_at(self, oid: str, i: int, *, cached: bool = True) -> bytes | memoryview:
        """Block i of a tensor object, decoded through its delta chain block by block
        (blocks of objects with the same element count line up). A run of same-dtype
        delta links, with the 'full' block under it and an export's cast link over it, is
        decoded in one pass (codec.decode_chain). Kept in the block cache."""
        return self._block(oid, i, cached=cached, lease=False)[0]

    def reference_block(self, oid: str, i: int, check: Pending | None = None
                        ) -> tuple[bytes | memoryview, Bytes | None]:
        """Block i of a delta's reference, as decode_block_at gives it, or read from a
        file on disk that holds its bytes (filecache.py: a single block verified by
        hash there, a block of a larger tensor fed to CHECK, which the encoder verifies
        before it keeps what it encoded): a fresh process then skips decoding the
        reference's chain cold. Only the encoder reads this way; checkout and verify
        decode the store, so damage there shows.
        (data, lease) as lease_block: POOL.give a lease that is not None when done."""
        h = self.header(oid)
        hit = self.blocks.get(oid, i, span(h))
        if hit is not None:
            return hit, None
        got = self._from_file(oid, i, h, check)
        return got if got is not None else (self.decode_block_at(oid, i), None)

    def lease_block(self, oid: str, i: int, *, cached: bool = True, checksum: bool = True
                    ) -> tuple[bytes | memoryview, Bytes | None]:
        """decode_block_at without keeping the block: (data, lease). When lease is not
        None, data lives in pooled memory: `POOL.give(lease)` once done with it (a
        checkout writes each block once; reusing its memory spares page faults).
        checksum=False: the caller checks the bytes against the object's id, so the zstd
        frames' own checksums are not checked (zstd_ctx.decompress_into)."""
        return self._block(oid, i, cached=cached, lease=True, checksum=checksum)

    def _block(self, oid: str, i: int, *, cached: bool, lease: bool, checksum: bool = True
               ) -> tuple[bytes | memoryview, Bytes | None]:
        top = self.header(oid)
        hit = self.blocks.get(oid, i, span(top)) if cached else None
        if hit is not None:
            return hit, None
        with scratch_buffers() as take:  # payloads live until the block is decoded
            w = self._walk(oid, top, i, cached, take)
            if not (w.run or w.cast is not None or w.full is not None):
                assert w.base is not None
                out: bytes | memoryview = w.base
                leased = None
            else:
                size = w.elements * dtype_info(top.dtype).itemsize
                leased = POOL.take(size) if lease else None
                dest = leased if leased is not None else kernels.empty(size)
                out = decode_chain(w.code, w.elements, w.run, base=w.base, full=w.full,
                                   cast=w.cast, out=dest, checksum=checksum or not lease)
        if cached and not lease:
            self.blocks.put(oid, i, span(top), out)
        return out, leased

    def _walk(self, oid: str, top: TensorHeader, i: int, cached: bool,
              take: Callable[[int], memoryview]) -> Walk:
        """What decoding block i of `oid` needs (see Walk)."""
        if i >= len(top.blocks):
            raise CorruptObject(f"tensor object {oid[:12]} has no block {i}")
        self.chain(oid)  # bounded and acyclic (headers are cached: no reads)
        n = top.blocks[i].elements
        run: list[tuple[str, bytes | memoryview]] = []  # newest first
        cur, code = oid, top.dtype
        cast: bytes | memoryview | None = None
        full: bytes | memoryview | None = None
        base: bytes | memoryview | None = None
        above = top  # the object whose link led to cur
        if top.blocks[i].mode == "cast" and top.ref is not None and (
                top.ref_dtype, top.dtype) == ("F32", "BF16"):
            # An export: its F32 parent's chain and the cast link decode in one pass.
            cast = self._payload(oid, top.blocks[i], take)
            cur, code = top.ref, "F32"
        while True:
            h = self.header(cur)
            if i >= len(h.blocks) or h.block_elements != top.block_elements or (
                    h.dtype != code):
                if cur != oid and above.ref_dtype == code and not (
                        run and run[-1][0] in EXTRAP_MODES) and (  # needs cur's own step
                        h.raw_size == above.n_elements * dtype_info(code).itemsize):
                    # Stored under another dtype than the link says (written before the
                    # fix in storage.presume_stored): the reference is its bytes, which
                    # its id names whatever the encoding, so take them in this layout.
                    base = self._bytes_at(cur, h, i * top.block_elements, n, code, cached)
                    break
                raise CorruptObject(f"tensor object {cur[:12]} has no block {i} "
                                    "that lines up")
            # A cached block ends the walk, unless the link above it is "extrap": that
            # link needs this level's own step, so the walk goes on below it.
            usable = cur != oid and cached and not (run and run[-1][0] in EXTRAP_MODES)
            if usable and (hit := self.blocks.get(cur, i, span(h))) is not None:
                base = hit
                break
            b = h.blocks[i]
            payload = self._payload(cur, b, take)
            if b.mode in STEP_MODES and h.ref is not None and h.ref_dtype == h.dtype:
                run.append((b.mode, payload))
                cur, above = h.ref, h
                continue
            if b.mode == "full":
                full = payload
            else:
                base = self._decode_one(cur, h, i, payload, cached)
            break
        return Walk(n, code, run[::-1], base, full, cast)

    def _bytes_at(self, oid: str, h: TensorHeader, start: int, n: int, code: str,
                  cached: bool) -> bytes:
        """Elements [start, start + n) of dtype CODE of a tensor object stored as H
        (another dtype or block size): its decoded bytes, gathered from its own blocks."""
        size = dtype_info(code).itemsize
        lo, hi = start * size, (start + n) * size
        span = h.block_elements * dtype_info(h.dtype).itemsize  # bytes per own block
        parts = [bytes(self.decode_block_at(oid, j, cached=cached))
                 for j in range(lo // span, min(len(h.blocks), -(-hi // span)))]
        out = b"".join(parts)[lo - lo // span * span :][: hi - lo]
        if len(out) != hi - lo:
            raise CorruptObject(f"tensor object {oid[:12]} is shorter than a delta "
                                "against it says")
        return out

    def bf16_prediction(self, oid: str, i: int, check: Pending | None = None
                        ) -> tuple[memoryview, Bytes]:
        """The BF16 cast prediction of block i of an F32 tensor object (what an export
        of it is encoded against), computed in the same pass as the F32 block's chain
        (or from a file holding its bytes, as reference_block): no F32 block is
        materialised. In pooled memory: POOL.give the lease when done."""
        h = self.header(oid)
        if h.dtype != "F32":
            raise CorruptObject(f"tensor object {oid[:12]} is {h.dtype}, not F32")
        n = h.blocks[i].elements if i < len(h.blocks) else 0
        lease = POOL.take(2 * n)
        hit = self.blocks.get(oid, i, span(h))  # e.g. the version just committed
        got = self._from_file(oid, i, h, check) if hit is None else None
        if hit is not None or got is not None:
            kernels.cast_bf16(lease[: 2 * n], hit if got is None else got[0])
            if got is not None:
                POOL.give(got[1])
            return memoryview(lease)[: 2 * n].toreadonly(), lease
        with scratch_buffers() as take:
            # The parent's own block is the base when its walk ends at itself.
            w = self._walk(oid, h, i, True, take)
            n = w.elements
            zero = _ZEROS[:n]  # a cast link with no residual: the prediction itself
            if not (w.run or w.full is not None):
                assert w.base is not None
                kernels.cast_bf16(lease[: 2 * n], w.base)
                return memoryview(lease)[: 2 * n].toreadonly(), lease
            out = decode_chain("F32", n, w.run, base=w.base, full=w.full,
                               cast_planes=(zero, zero), out=lease)
        return out, lease

    def _from_file(self, oid: str, i: int, h: TensorHeader, check: Pending | None
                   ) -> tuple[memoryview, Bytes] | None:
        """Block i of OID from a file on disk known to hold its bytes (filecache.py:
        see reference_block), read into pooled memory: (data, lease); or None."""
        if self.known is None or i >= len(h.blocks):
            return None
        size = h.blocks[i].elements * dtype_info(h.dtype).itemsize
        lease = POOL.take(size)
        data = memoryview(lease)[:size]
        if not self.known.read_block(oid, i, h.block_elements * dtype_info(h.dtype).itemsize,
                                     len(h.blocks), data, check):
            POOL.give(lease)
            return None
        return data.toreadonly(), lease

    def _payload(self, oid: str, b: BlockInfo, take: Callable[[int], memoryview]
                 ) -> bytes | memoryview:
        """Block b's stored bytes, read into scratch memory where the store can (no fresh
        memory to fault in, no mapping to tear down); valid until the block is decoded."""
        read_into = getattr(self.store, "read_into", None)
        if read_into is None:
            return self.store.get_range(oid, b.offset, b.length)
        buf = take(b.length)
        return buf[: read_into(oid, b.offset, buf)]

    def _decode_one(self, oid: str, h: TensorHeader, i: int, payload: bytes | memoryview,
                    cached: bool) -> bytes | memoryview:
        b = h.blocks[i]
        ref = None
        if b.mode != "full":
            if h.ref is None:
                raise CorruptObject(f"tensor object {oid[:12]} block {i} needs a missing reference")
            ref = self.decode_block_at(h.ref, i, cached=cached)
        return decode_block(b.mode, payload, h.dtype, b.elements, ref=ref, ref_code=h.ref_dtype)
