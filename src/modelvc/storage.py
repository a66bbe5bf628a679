"""Tensors and blobs on top of an object store: encode, dedup, delta chains, verified reads.

An object's id is the BLAKE3 of its *decoded* bytes, so identical tensors dedup for
free and every read is verified by re-hashing. Tensor objects may be deltas against
a reference object; chains are bounded in depth and accumulated stored size so any
version checks out in a few object reads.

The id says nothing of the encoding: a raw file holding a tensor's bytes has the
tensor's id, and whichever was stored first is the object both use. So every reader
decodes an object by its own magic (`tensor_header` is None for a blob), whatever the
segment that names it is: a byte segment may be read from a tensor object and a tensor
segment from a blob, and both decode to the bytes the id names.

Where the rest is: the decode walk down a chain is blockread.py (BlockReader, mixed in
here), the decoded-block cache blockcache.py, the stores objects/. This module (about
450 lines) keeps encode, dedup, reference policy and the object kinds together: the
reference policy reads the chain bounds the encoder obeys (bench/storage.py patches
MAX_CHAIN_DEPTH here for its depth sweep).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import blake3

from .blockcache import BlockCache
from .blockread import BlockReader
from .codec import (
    BLOCK_ELEMENTS,
    TensorHeader,
    TensorObjectWriter,
    decode_blob,
    dtype_info,
    encode_blob,
    encode_block,
    read_header,
)
from .codec.blob import RAW_MAGIC, ZSTD_MAGIC
from .codec.block import STEP_MODES
from .codec.buffers import POOL, Bytes
from .codec.header import MAGIC as TENSOR_MAGIC
from .codec.header import TAIL_GUESS
from .errors import CorruptObject, ModelvcError
from .filecache import KnownFiles, Pending
from .meta.api import ObjectRow
from .objects.base import ObjectStore, flush, get_tail
from .objects.pending import PendingStore
from .pipeline import windowed

Reader = Callable[[int, int], "bytes | memoryview"]

T = TypeVar("T")
MAX_CHAIN_DEPTH = 3
MIN_DELTA_BYTES = 16 << 10  # smaller tensors are stored whole (see put_tensor_from)
# Reading a chain costs its stored bytes; past this multiple of the raw size a fresh
# full copy is cheaper to check out than one more link.
MAX_CHAIN_STORED = 4.0
# No reader follows more links than this: writers stop at MAX_CHAIN_DEPTH (+1 for an
# export), so a longer chain is damage, and a loop would otherwise be walked forever.
MAX_WALK = 4 * MAX_CHAIN_DEPTH
# Predicting a low-precision export from its high-precision parent (cast delta).
# Tensors above this stream through a temporary file instead of memory.
STREAM_BYTES = 64 << 20
HASH_CHUNK = 16 << 20
# In a batch (ObjectIO.batched), objects up to this size are presumed new without asking
# the store, and held for one put_many (into packs; a store's `member_max` overrides it).
BATCH_MAX = 1 << 20
_ZEROS = memoryview(bytes(BLOCK_ELEMENTS))
BLOB_MAGICS = (RAW_MAGIC, ZSTD_MAGIC)
CASTS = {("F32", "BF16"), ("F32", "F16"), ("F64", "F32"), ("F16", "BF16"), ("BF16", "F16")}


@dataclass(frozen=True)
class Stored:
    row: ObjectRow
    new: bool  # written by this call (False: deduplicated)


class ObjectIO(BlockReader):
    """Encode/decode tensors and blobs against one ObjectStore. Thread-safe."""

    def __init__(self, store: ObjectStore, *, executor: Executor | None = None,
                 _shared: ObjectIO | None = None) -> None:
        self.store = store
        self.executor = executor  # for block-level parallelism inside big tensors
        self._pending: PendingStore | None = None
        self._batch_max = BATCH_MAX
        self._parents: frozenset[str] = frozenset()  # see presume_stored
        # A batching view (see batched) shares the caches of the ObjectIO it was made from.
        self._headers: OrderedDict[str, TensorHeader] = (
            _shared._headers if _shared else OrderedDict())
        self._blobs: OrderedDict[str, None] = (  # ids known to be blobs
            _shared._blobs if _shared else OrderedDict())
        self._lock: threading.Lock = _shared._lock if _shared else threading.Lock()
        self.blocks = _shared.blocks if _shared else BlockCache(
            int(os.environ.get("MODELVC_CACHE_MB", "256")) << 20)
        # Keep the raw blocks a commit stored, for the next commit in this process. Off
        # in the CLI (one commit per process), where a block sliced from a tensor read
        # whole also pinned that whole tensor: a 91 MB delta commit peaked ~45 MiB higher.
        self.keep_committed = os.environ.get("MODELVC_KEEP_COMMITTED", "1") != "0"
        # Files on disk holding tensors' bytes (filecache.py), set by the registry.
        self.known: KnownFiles | None = _shared.known if _shared else None

    # ---- batches
    def batched(self) -> ObjectIO:
        """A view sharing this one's caches whose small new objects are held and written
        by `write_batch` in one put_many: a commit of many small tensors is then a few
        store requests, not a HEAD and a PUT each. Reads through the view see the held
        objects. Until write_batch returns, none of them is stored. For stores that say
        `batched_writes` (every PackedStore: local, S3, memory); else the ObjectIO itself."""
        if not getattr(self.store, "batched_writes", False):
            return self  # a local disk gains nothing: write each as it is encoded
        item = int(getattr(self.store, "member_max", BATCH_MAX))
        pending = PendingStore(self.store, max_item=item, on_skip=self.forget,
                               early=getattr(self.store, "pack_early", None))
        view = ObjectIO(pending, executor=self.executor, _shared=self)
        view._pending = pending
        view._batch_max = item
        return view

    def presume_stored(self, ids: frozenset[str]) -> None:
        """IDS (the parent version's objects) are stored: a batch never presumes them
        new. Held under this commit's encoding (the parent's bytes under another name or
        dtype), one would be what the tensors delta against it read, while the store
        keeps the parent's encoding: their deltas would name a reference that does not
        line up (CorruptObject in any other process)."""
        self._parents = ids

    def write_batch(self) -> set[str]:
        """Store the held objects. Returns the ids the store already had: the rows this
        view returned for them describe an encoding that was not stored (re-read them
        with `stored_row`)."""
        return self._pending.flush() if self._pending is not None else set()

    def stored_row(self, row: ObjectRow) -> ObjectRow:
        """`row`'s object as the store holds it (perhaps encoded as the other kind)."""
        self.forget(row.id)
        return self.row(row.id, row.raw_size)

    def row(self, oid: str, raw_size: int | None = None) -> ObjectRow:
        """The row of a stored object, by its own encoding (tensor or blob). A blob's
        raw size is RAW_SIZE when the caller knows it, else decoded to find out."""
        h = self.tensor_header(oid)
        if h is not None:
            return ObjectRow(oid, "tensor", h.codec, h.raw_size, self.store.size(oid), h.ref)
        if raw_size is None:
            raw_size = len(self.read_blob(oid))
        return ObjectRow(oid, "blob", "zstd", raw_size, self.store.size(oid))

    def _known(self, oid: str, nbytes: int, ref: str | None) -> bool:
        """Dedup check. In a batch a small object is presumed new (no request) unless it
        is in the reference's own chain (the parent's unchanged tensor, or one it was
        encoded against: a revert to an earlier checkpoint); write_batch's put_many
        settles the rest. Encoding such an object against REF would make its header
        point into a chain that leads back to itself. The parent's objects are asked
        for too (presume_stored)."""
        if (self._pending is not None and nbytes <= self._batch_max and oid != ref
                and oid not in self._parents and not self._in_chain(oid, ref)):
            return self._pending.holds(oid)
        return self.store.has(oid)

    def _in_chain(self, oid: str, ref: str | None) -> bool:
        """Whether OID is in REF's delta chain; a chain that no longer reads (an object
        `verify --repair` moved aside) may hold it, so the store is asked then."""
        try:
            return ref is not None and self.tensor_header(ref) is not None and (
                oid in self.chain(ref))  # a blob has no chain
        except ModelvcError:
            return True

    # ---- tensors
    def header(self, oid: str) -> TensorHeader:
        """The header of a tensor object; CorruptObject if the object is a blob."""
        h = self.tensor_header(oid)
        if h is None:
            raise CorruptObject(f"object {oid[:12]} is a blob, not a tensor object")
        return h

    def tensor_header(self, oid: str) -> TensorHeader | None:
        """The object's tensor header, or None when it is stored as a blob.

        Decided by the object's magic at no extra cost for tensors: the tail read for
        the footer says MVT1 and the footer parses (its blocks must tile the body
        exactly, so even a raw blob that ends like a tensor object fails it); only
        otherwise is the head read to tell a blob (MVB0/MVB1) from a damaged object."""
        with self._lock:
            h = self._headers.get(oid)
            if h is not None:
                return h
            if oid in self._blobs:
                self._blobs.move_to_end(oid)
                return None
        size, tail = get_tail(self.store, oid, TAIL_GUESS)
        try:
            h = read_header(size, lambda start, n: bytes(self.store.get_range(oid, start, n)),
                            tail_bytes=tail)
        except CorruptObject:
            head = tail[:4] if len(tail) >= size else bytes(self.store.get_range(oid, 0, 4))
            if head not in BLOB_MAGICS:
                raise
            with self._lock:
                self._blobs[oid] = None
                while len(self._blobs) > 4096:
                    self._blobs.popitem(last=False)
            return None
        with self._lock:
            self._headers[oid] = h
            while len(self._headers) > 4096:
                self._headers.popitem(last=False)
        return h

    def forget(self, oid: str) -> None:
        """Drop what is cached of an object's encoding (after it was re-encoded, or
        deleted: it may come back encoded otherwise)."""
        with self._lock:
            self._headers.pop(oid, None)
            self._blobs.pop(oid, None)

    def chain_rows(self, oid: str) -> list[ObjectRow]:
        """Rows for the delta references of `oid` (so gc keeps them, rows or not); none
        for a blob."""
        if self.tensor_header(oid) is None:
            return []
        return [self._tensor_row(i) for i in self.chain(oid)[1:]]

    def chain(self, oid: str) -> list[str]:
        """The object and its delta references, nearest first. CorruptObject, naming the
        damaged object, for a chain that loops or is longer than any writer makes (an
        object replaced by another's bytes): a walk down it would never end."""
        out = [oid]
        seen = {oid}
        while (ref := self.header(out[-1]).ref) is not None:
            if ref in seen:
                raise CorruptObject(f"object {out[-1]} is damaged: its delta reference "
                                    f"{ref[:12]} loops back into its own chain (reading "
                                    f"{oid[:12]})", hint="run `modelvc verify`")
            if len(out) > MAX_WALK:
                raise CorruptObject(f"object {out[-1]} is damaged: the delta chain of "
                                    f"{oid[:12]} is longer than {MAX_WALK} links",
                                    hint="run `modelvc verify`")
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
            head = self.header(ref_id)
        except Exception:
            return None
        if head.dtype != dtype:
            # An export (fp32 -> bf16) is predicted from its own parent only: an older
            # ancestor predicts it badly. Allowed one link past the bound: exports are
            # leaves, nothing deltas against a cast object's chain further.
            ok = (_numel(head.shape) == numel and (head.dtype, dtype) in CASTS
                  and head.block_elements == BLOCK_ELEMENTS
                  and len(ids) <= MAX_CHAIN_DEPTH + 1)
            return ref_id if ok else None
        for i, cand in enumerate(ids):
            depth = len(ids) - 1 - i  # links below cand
            if depth + 1 > MAX_CHAIN_DEPTH:
                continue
            h = self.header(cand)
            if h.block_elements != BLOCK_ELEMENTS:
                continue
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
        """Store an in-memory tensor (see put_tensor_from for streaming)."""
        mv = memoryview(raw).cast("B")
        return self.put_tensor_from(lambda off, n: mv[off : off + n], dtype, shape,
                                    ref=ref, oid=oid or blake3.blake3(mv).hexdigest())

    def put_tensor_from(
        self,
        read: Reader,
        dtype: str,
        shape: tuple[int, ...],
        *,
        ref: str | None = None,
        oid: str | None = None,
    ) -> Stored:
        """Store a tensor read block by block with read(offset, length).

        Memory is a few blocks (plus the encoded object for small tensors): a
        multi-GB tensor streams through a temporary file into the store."""
        size = dtype_info(dtype).itemsize
        numel = _numel(shape)
        nbytes = numel * size
        if oid is None:
            hasher = blake3.blake3()
            for off in range(0, nbytes, HASH_CHUNK):
                hasher.update(read(off, min(HASH_CHUNK, nbytes - off)))
            oid = hasher.hexdigest()
        if self._known(oid, nbytes, ref):  # perhaps stored as a blob: either decodes
            return Stored(self.row(oid, nbytes), False)
        # A tiny tensor is stored whole: a delta would save a few hundred bytes and cost
        # a walk through its reference chain at every checkout.
        ref = self.usable_ref(ref, dtype, numel) if ref and nbytes >= MIN_DELTA_BYTES else None
        # Keep the raw blocks for the next commit's delta. An object that ends a chain
        # is kept last in line: nothing deltas against it (an export may cast from it),
        # and it must not push out the objects the next checkpoints do delta against.
        ends_chain = ref is not None and len(self.chain(ref)) >= MAX_CHAIN_DEPTH
        with self._encode(read, dtype, shape, ref, big=nbytes > STREAM_BYTES,
                          cache_as=oid, cache_low=ends_chain) as (header, sink):
            stored = sink.tell()
            if isinstance(sink, io.BytesIO):
                new = self.store.put(oid, sink.getvalue())
            else:
                sink.seek(0)
                new = self.store.put_file(oid, sink)
        if not new:  # stored meanwhile, perhaps encoded differently: describe that one
            self.forget(oid)
            return Stored(self.row(oid, nbytes), False)
        with self._lock:
            self._headers[oid] = header
        row = ObjectRow(oid, "tensor", header.codec, header.raw_size, stored, header.ref)
        return Stored(row, new)

    @contextmanager
    def _encode(self, read: Reader, dtype: str, shape: tuple[int, ...], ref: str | None, *,
                big: bool, cache_as: str | None = None, cache_low: bool = False
                ) -> Iterator[tuple[TensorHeader, BinaryIO]]:
        """Encode blocks (in parallel, in order) into memory or a temporary file."""
        size = dtype_info(dtype).itemsize
        numel = _numel(shape)
        ref_h = self.header(ref) if ref else None
        ref_code = ref_h.dtype if ref_h else None
        nblocks = max(1, -(-numel // BLOCK_ELEMENTS))
        # The reference's own reference, for "extrap" blocks (same dtype all along).
        grand = ref_h.ref if ref_h and ref_h.dtype == dtype and ref_h.ref_dtype == dtype else None

        # Multi-block references read from files on disk: used as read, verified whole
        # after the last block (filecache.Pending); emptied to encode again without them.
        checks: dict[str, Pending] = {}
        known = self.known if nblocks > 1 else None
        for o in (ref, grand):
            if known is not None and o is not None:
                oh = self.header(o)
                c = known.pending(o, oh.block_elements * dtype_info(oh.dtype).itemsize)
                if c is not None:
                    checks[o] = c

        def enc(i: int) -> tuple[str, bytes]:
            lo, hi = i * BLOCK_ELEMENTS, min(numel, (i + 1) * BLOCK_ELEMENTS)
            raw = read(lo * size, (hi - lo) * size)
            # The next commit's reference, most likely; only immutable bytes are kept.
            if cache_as is not None and self.keep_committed and isinstance(
                    getattr(raw, "obj", raw), bytes):
                self.blocks.put(cache_as, i, BLOCK_ELEMENTS * size, raw, low=cache_low)
            if ref is not None and (ref_code, dtype) == ("F32", "BF16"):
                # An export: encoded against its parent's prediction, made in one pass.
                pred, lease = self.bf16_prediction(ref, i, checks.get(ref))
                try:
                    return encode_block(raw, dtype, ref=pred, ref_code=ref_code,
                                        predicted=True)
                finally:
                    POOL.give(lease)
            rb2, held2 = None, None
            if grand is not None and ref_h is not None and ref_h.blocks[i].mode in STEP_MODES:
                # First: then ref's decode hits it.
                rb2, held2 = self.reference_block(grand, i, checks.get(grand))
            rb, held = self.reference_block(ref, i, checks.get(ref)) if ref else (None, None)
            try:
                return encode_block(raw, dtype, ref=rb, ref_code=ref_code, ref2=rb2)
            finally:
                for held_lease in (held, held2):
                    if held_lease is not None:
                        POOL.give(held_lease)

        pool = self.executor if nblocks > 1 else None
        sink: BinaryIO = tempfile.TemporaryFile() if big else io.BytesIO()  # noqa: SIM115
        with sink:
            while True:
                writer = TensorObjectWriter(sink, dtype, shape, ref_id=ref, ref_code=ref_code)
                for mode, payload in windowed(pool, range(nblocks), enc):
                    writer.add_block(mode, payload)
                if all(c.verify() for c in checks.values()):
                    break
                # A file no longer held a reference's bytes (changed in place with its
                # stat put back): what was encoded against them is dropped, and the
                # reference is decoded from the store (its file is given up).
                checks.clear()
                sink.seek(0)
                sink.truncate()
            yield writer.finish(), sink

    def reencode(self, oid: str, ref: str | None, *, raw: bytes | None = None) -> ObjectRow:
        """Rewrite a tensor object against another reference (or as a full copy),
        verify it, and swap it in atomically. Its id and decoded bytes stay the same.
        `raw`: its bytes, when they were had otherwise (repair.py; checked against OID)."""
        h = self.header(oid)
        if raw is None:
            raw = self.read_tensor(oid)
        elif blake3.blake3(raw).hexdigest() != oid:
            raise CorruptObject(f"re-encoding {oid[:12]}: the bytes given are not its bytes")
        mv = memoryview(raw)
        with self._encode(lambda off, n: mv[off : off + n], h.dtype, h.shape, ref,
                          big=False) as (header, sink):
            data = sink.getvalue()  # type: ignore[attr-defined]
        self.store.replace(oid, data)
        flush(self.store, [oid])
        self.forget(oid)
        if self.read_tensor(oid, verify=False) != raw:
            raise CorruptObject(f"re-encoding {oid[:12]} failed verification")
        return ObjectRow(oid, "tensor", header.codec, header.raw_size, len(data), header.ref)

    def _tensor_row(self, oid: str) -> ObjectRow:
        h = self.header(oid)
        return ObjectRow(oid, "tensor", h.codec, h.raw_size, self.store.size(oid), h.ref)

    def stale(self) -> None:
        """Bytes failed their id check: another process may have replaced an object
        (`verify --repair`, a writer re-encoding it; objects/packed.py), and what this
        process knows of encodings (headers, decoded blocks, the pack map) may be old.
        Forget it all (a rare event) before the one retry."""
        with self._lock:
            self._headers.clear()
            self._blobs.clear()
        self.blocks.clear()
        refresh = getattr(self.store, "refresh", None)
        if refresh is not None:
            refresh()

    def _once_more(self, fn: Callable[[], T]) -> T:
        """fn(); after a CorruptObject, `stale` and fn() once more (then it stands)."""
        try:
            return fn()
        except CorruptObject:
            self.stale()
            return fn()

    def iter_tensor(self, oid: str, *, verify: bool = True, cached: bool = True,
                    transient: bool = False, checksum: bool = True
                    ) -> Iterator[bytes | memoryview]:
        """Decoded blocks in order (two at a time in parallel); the BLAKE3 of the whole
        is checked against the id after the last block. An object stored as a blob
        (same bytes, stored first by a byte segment) is its one piece.

        Damage (a block that does not decode, bytes failing their id check) is read
        once more after `stale`, wherever it shows: another process may have replaced
        the object (`verify --repair`). The retry decodes from the start from the
        refreshed map and skips the bytes already yielded, after checking that they
        hash as its own first bytes do; its id check then covers every byte the
        consumer holds (an id names one byte string, so a matching prefix is the right
        prefix). Pieces already yielded cannot be taken back: when they differ (the old
        copy decoded to wrong bytes, seen only by the id check), CorruptObject says the
        object changed while it was read and to run the command again. verify=False:
        the caller checks the whole against the id itself (checkout), so the skipped
        prefix is not re-hashed here; a wrong one fails the caller's check.

        transient: blocks are not kept in the cache and each one is valid only until
        the next is asked for (its memory is then reused); with checksum=False too, the
        zstd frames' own checksums are not checked (the whole is hashed against the id
        anyway: here, or by a verify=False caller)."""
        done = 0  # bytes yielded
        prefix = b""  # their BLAKE3 (verify)
        for attempt in (1, 2):
            hasher = blake3.blake3() if verify else None
            skip = done
            try:
                for part in self._iter_tensor(oid, cached, transient, checksum):
                    if skip:
                        n = min(skip, len(part))
                        if hasher is not None:
                            hasher.update(part[:n])
                        skip -= n
                        if not skip and hasher is not None and hasher.digest() != prefix:
                            raise CorruptObject(
                                f"tensor object {oid[:12]} changed while it was read (another "
                                f"process replaced it): the first {done} bytes already "
                                "delivered are not its bytes",
                                hint="run the command again (it reads the object anew)")
                        part = part[n:]
                        if not len(part):
                            continue
                    if hasher is not None:
                        hasher.update(part)
                    done += len(part)
                    yield part
                if skip:
                    raise CorruptObject(f"tensor object {oid[:12]} decodes to fewer bytes "
                                        f"than the {done} already delivered")
                if hasher is not None and hasher.hexdigest() != oid:
                    self.blocks.drop(oid)
                    raise CorruptObject(f"tensor object {oid[:12]} does not match its id")
                return
            except CorruptObject:
                if attempt == 2:
                    raise
                prefix = hasher.digest() if hasher is not None else b""
                self.stale()

    def _iter_tensor(self, oid: str, cached: bool, transient: bool, checksum: bool = True
                     ) -> Iterator[bytes | memoryview]:
        """The object's decoded pieces, sizes checked, unhashed (iter_tensor hashes)."""
        h = self.tensor_header(oid)
        if h is None:
            yield self._blob(oid, self.store.get(oid), False)
            return
        total = 0
        pool = self.executor if len(h.blocks) > 1 else None
        def block(i: int) -> tuple[bytes | memoryview, Bytes | None]:
            return self._block(oid, i, cached=cached, lease=transient, checksum=checksum)

        leases = windowed(pool, range(len(h.blocks)), block)
        try:
            for part, leased in leases:
                total += len(part)
                yield part
                if leased is not None:
                    POOL.give(leased)
        finally:
            leases.close()  # cancels blocks decoding ahead when the consumer stops
        if total != h.raw_size or total != dtype_info(h.dtype).itemsize * _numel(h.shape):
            raise CorruptObject(f"tensor object {oid[:12]} decodes to the wrong size")

    def read_tensor(self, oid: str, *, verify: bool = True, cached: bool = True) -> bytes:
        """A whole tensor, decoded and verified against its id (cached=False reads every
        block of the chain from the store). Blob objects too (see iter_tensor)."""
        def read() -> bytes:
            parts = list(self.iter_tensor(oid, verify=verify, cached=cached))
            return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

        return self._once_more(read)

    # ---- blobs
    def put_blob(self, data: bytes | memoryview, *, oid: str | None = None) -> Stored:
        oid = oid or blake3.blake3(data).hexdigest()
        if self._known(oid, len(data), None):  # perhaps stored as a tensor: either decodes
            return Stored(self.row(oid, len(data)), False)
        enc = encode_blob(bytes(data))
        new = self.store.put(oid, enc)
        if not new:
            self.forget(oid)
            return Stored(self.row(oid, len(data)), False)
        with self._lock:
            self._blobs[oid] = None
        return Stored(ObjectRow(oid, "blob", "zstd", len(data), len(enc)), new)

    def read_blob(self, oid: str, *, verify: bool = True) -> bytes:
        """A byte segment's object, whole: a blob, or a tensor object holding the same
        bytes (decoded through its chain)."""
        def read() -> bytes:
            data = self.store.get(oid)
            if bytes(data[:4]) == TENSOR_MAGIC:
                return self.read_tensor(oid, verify=verify)
            return self._blob(oid, data, verify)

        return self._once_more(read)

    def _blob(self, oid: str, data: bytes | memoryview, verify: bool) -> bytes:
        out = decode_blob(data)
        if verify and blake3.blake3(out).hexdigest() != oid:
            raise CorruptObject(f"blob object {oid[:12]} does not match its id")
        return out

    def iter_object(self, oid: str, is_tensor: bool, *, cached: bool = True,
                    transient: bool = False) -> Iterator[bytes | memoryview]:
        """An object's decoded bytes in pieces (tensors block by block), verified.
        IS_TENSOR (the segment's kind) only says which encoding to try first."""
        if is_tensor:
            yield from self.iter_tensor(oid, cached=cached, transient=transient)
        else:
            yield self.read_blob(oid)

    def read_object(self, oid: str, is_tensor: bool, *, verify: bool = True) -> bytes:
        if is_tensor:
            return self.read_tensor(oid, verify=verify)
        return self.read_blob(oid, verify=verify)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n

