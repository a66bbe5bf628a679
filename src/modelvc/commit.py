"""Store a file or folder as manifest entries: plan, hash, dedup, delta, write objects.

Files stream segment by segment (a tensor at a time) through a small window of
concurrent jobs, so memory stays bounded by a few tensors and both cores work.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .codec.buffers import POOL
from .errors import InvalidModelFile
from .filecache import ident_of, known_tensors
from .filehash import SKIP_NAMES as SKIP_NAMES
from .filehash import claim, digest_of
from .filehash import collect_files as collect_files
from .formats import FilePlan, Segment, plan_file
from .manifest import FileEntry, SegmentRef
from .meta.api import ObjectRow
from .pipeline import windowed
from .references import References
from .storage import MIN_DELTA_BYTES, STREAM_BYTES, ObjectIO

if TYPE_CHECKING:  # formats.memory (state dicts) needs numpy: a file commit does not
    from .formats.memory import MemFile

Progress = Callable[[int], None]  # called with bytes just processed
Read = Callable[[int, int], bytes | memoryview]  # (offset in a segment, n) -> its bytes


@dataclass
class StoreResult:
    files: list[FileEntry] = field(default_factory=list)
    objects: dict[str, ObjectRow] = field(default_factory=dict)
    ref_objects: dict[str, ObjectRow] = field(default_factory=dict)  # delta references
    new_bytes: int = 0  # stored bytes written by this commit
    new_ids: list[str] = field(default_factory=list)  # objects written by this commit


# Segments encoded ahead of the one being recorded (the pool idles behind a slow one
# with fewer; memory is a few small tensors each, big ones stream block by block).
AHEAD = 8


class FileStorer:
    """Turns files into FileEntry records, writing the objects they need."""

    def __init__(self, io: ObjectIO, pool: ThreadPoolExecutor, *, progress: Progress | None = None):
        self.io = io.batched()  # small objects go to the store together, at the end
        self.pool = pool
        self._report = progress or (lambda n: None)
        # A streamed tensor (GBs) reports as it is read, from a pool thread; its segment
        # then reports only the rest. The lock keeps the reported total monotonic.
        self._lock = threading.Lock()
        self._partial: dict[int, int] = {}  # segment offset -> bytes reported early

    def _advance(self, seg: Segment, n: int) -> None:
        """Report N bytes of SEG early (at most all but one of them)."""
        with self._lock:
            had = self._partial.get(seg.offset, 0)
            n = max(0, min(n, seg.length - 1 - had))
            if n:
                self._partial[seg.offset] = had + n
                self._report(n)

    def _finish(self, seg: Segment) -> None:
        with self._lock:
            self._report(seg.length - self._partial.pop(seg.offset, 0))

    def store(self, files: list[tuple[str, Path]], refs: References) -> StoreResult:
        """Store FILES; tensors delta against REFS (the parent version's)."""
        result = StoreResult()
        self.io.presume_stored(refs.ids())
        for rel, abspath in files:
            result.files.append(self._store_file(rel, abspath, refs, result))
        self._settle(result, self.io.write_batch())
        return result

    def store_memory(self, files: list[MemFile], refs: References) -> StoreResult:
        """Store in-memory FILES (commit_files): as `store`, with no file to read."""
        result = StoreResult()
        self.io.presume_stored(refs.ids())
        for f in files:
            index = {s.offset: i for i, s in enumerate(f.plan.segments)}
            sha = self.pool.submit(_sha256_pieces, f.pieces).result

            def reader(seg: Segment, f: MemFile = f, index: dict[int, int] = index) -> Read:
                i = index[seg.offset]
                return lambda off, n: f.read(i, off, n)

            result.files.append(self._store_plan(f.rel, f.plan, reader, sha, refs, result))
        self._settle(result, self.io.write_batch())
        return result

    def _settle(self, result: StoreResult, existing: set[str]) -> None:
        """Objects the batch found already stored were not written by this commit, and
        the store's encoding may differ from ours: take their rows from the store."""
        for oid in existing & result.objects.keys():
            mine = result.objects[oid]
            row = result.objects[oid] = self.io.stored_row(mine)
            if oid in result.new_ids:
                result.new_ids.remove(oid)
                result.new_bytes -= mine.stored_size
            if row.kind == "tensor":
                for c in self.io.chain_rows(oid):
                    result.ref_objects.setdefault(c.id, c)

    def _store_file(
        self,
        rel: str,
        path: Path,
        refs: References,
        result: StoreResult,
    ) -> FileEntry:
        plan = plan_file(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            before = os.fstat(fd)
            def preader(seg: Segment) -> Read:
                def read(off: int, n: int) -> bytes:
                    data = os.pread(fd, n, seg.offset + off)
                    if len(data) != n:
                        raise InvalidModelFile(f"{rel} is shorter than its header says "
                                               "(truncated while being read?)")
                    return data
                return read

            # Hashed while the process started (filehash.py), else from the segments'
            # bytes as they are read (the file is read once), else beside the encode.
            early = claim(path) if before.st_size == plan.size else None
            fused = OrderedHash.of(plan) if early is None else None
            own = (None if early is not None or fused is not None
                   else self.pool.submit(_sha256, fd, plan.size))

            def reader(seg: Segment) -> Read:
                read = preader(seg)
                if fused is None:
                    return read

                def read_and_hash(off: int, n: int) -> bytes | memoryview:
                    data = read(off, n)
                    if off == 0 and n == seg.length:  # the whole segment (never streamed)
                        fused.add(seg.offset, data)
                    return data
                return read_and_hash

            def sha() -> str:
                if fused is not None:
                    got = fused.digest()
                    return got if got is not None else _sha256(fd, plan.size)
                if own is not None:
                    return own.result()
                assert early is not None
                # Of the file as opened, which it must still be now that every segment
                # was read; else (changed meanwhile: rare) hashed here.
                digest = digest_of(early, before)
                same = ident_of(os.fstat(fd)) == ident_of(before)
                return digest if digest is not None and same else _sha256(fd, plan.size)

            entry = self._store_plan(rel, plan, reader, sha, refs, result)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if sum(r.size for r in entry.segments) != plan.size:
            raise InvalidModelFile(f"{path} changed while it was being committed; retry")
        if self.io.known is not None and ident_of(before) == ident_of(after):
            # The next commit's references may be read back from this file.
            self.io.known.note(path, after, known_tensors(entry.segments, MIN_DELTA_BYTES))
        return entry

    def _store_plan(self, rel: str, plan: FilePlan, reader: Callable[[Segment], Read],
                    sha: Callable[[], str], refs: References, result: StoreResult
                    ) -> FileEntry:
        """Store each segment of PLAN (READER(seg) reads its bytes) and return the entry."""
        segs: list[SegmentRef] = []
        for seg, row, new, chain in windowed(
            self.pool, plan.segments,
            lambda s: self._store_segment(reader(s), s, rel, refs), window=AHEAD,
        ):
            if row.id not in result.objects:
                result.objects[row.id] = row
                if new:
                    result.new_bytes += row.stored_size
                    result.new_ids.append(row.id)
            for c in chain:
                result.ref_objects.setdefault(c.id, c)
            segs.append(_segment_ref(seg, row.id))
            self._finish(seg)
        return FileEntry(rel, plan.size, sha(), plan.format, tuple(segs), dict(plan.info))

    def _store_segment(
        self,
        read: Read,
        seg: Segment,
        rel: str,
        refs: References,
    ) -> tuple[Segment, ObjectRow, bool, list[ObjectRow]]:
        if seg.kind == "tensor":
            assert seg.name is not None and seg.dtype is not None and seg.shape is not None
            ref = refs.get(rel, seg.name)
            ref_id = ref.id if ref else None
            if seg.length > STREAM_BYTES:  # hashed, then encoded, block by block
                def counted(off: int, n: int) -> bytes | memoryview:
                    self._advance(seg, n // 2)  # each byte is read twice: hash, encode
                    return read(off, n)

                stored = self.io.put_tensor_from(counted, seg.dtype, seg.shape, ref=ref_id)
            else:
                stored = self.io.put_tensor(read(0, seg.length), seg.dtype, seg.shape, ref=ref_id)
            return seg, stored.row, stored.new, self.io.chain_rows(stored.row.id)
        stored = self.io.put_blob(read(0, seg.length))
        # Deduplicated onto a tensor object (same bytes): its chain must stay too.
        chain = self.io.chain_rows(stored.row.id) if stored.row.kind == "tensor" else []
        return seg, stored.row, stored.new, chain


def _segment_ref(seg: Segment, oid: str) -> SegmentRef:
    if seg.kind == "tensor":
        return SegmentRef(oid, seg.length, seg.name, seg.dtype, seg.shape)
    return SegmentRef(oid, seg.length)


class OrderedHash:
    """The sha256 of a file from its segments' bytes as the commit reads them, in any
    order: a piece is hashed once every piece before it was (it waits, held, until
    then), by whichever reading thread finds it next in line. A separate hash would
    read the whole file a second time (a 91 MB checkpoint: ~0.03 s CPU and a pass over
    memory beside the encode's)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._h = hashlib.sha256()
        self._pos = 0  # bytes hashed so far
        self._waiting: dict[int, bytes | memoryview] = {}  # offset -> piece read early
        self._done = threading.Condition()
        self._busy = False  # a thread is hashing: the others only leave their piece

    @classmethod
    def of(cls, plan: FilePlan) -> OrderedHash | None:
        """For a plan whose segments tile the file and are each read whole (none
        streamed: pieces held waiting stay small); else None (hash the file apart)."""
        pos = 0
        for seg in sorted(plan.segments, key=lambda s: s.offset):
            if seg.offset != pos or seg.length > STREAM_BYTES:
                return None
            pos += seg.length
        return cls(plan.size) if pos == plan.size else None

    def add(self, offset: int, data: bytes | memoryview) -> None:
        with self._done:
            if not len(data) or offset < self._pos or offset in self._waiting:
                return  # nothing, or read again (a retry): hashed or waiting already
            self._waiting[offset] = data
            if self._busy:
                return
            self._busy = True
        while True:
            with self._done:
                piece = self._waiting.pop(self._pos, None)
                if piece is None:  # (in the same hold as the check: none is left behind)
                    self._busy = False
                    self._done.notify_all()
                    return
                self._pos += len(piece)
            self._h.update(piece)  # outside the lock: hashlib releases the GIL

    def digest(self) -> str | None:
        """The file's sha256 once every byte was hashed, else None. Called after every
        segment was read: waits for a thread still hashing the last pieces."""
        with self._done:
            while self._busy:
                self._done.wait()
            done = self._pos == self.size
        return self._h.hexdigest() if done else None


def _sha256_pieces(pieces: tuple[memoryview, ...]) -> str:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()


def _sha256(fd: int, size: int) -> str:
    """The file's sha256, read through one reused buffer (fresh memory faults cost more
    than hashing it)."""
    h = hashlib.sha256()
    lease = POOL.take(min(size, 1 << 23))
    buf = memoryview(lease)
    try:
        off = 0
        while off < size:
            got = os.preadv(fd, [buf[: min(len(buf), size - off)]], off)
            if not got:
                break
            h.update(buf[:got])
            off += got
    finally:
        POOL.give(lease)
    return h.hexdigest()
