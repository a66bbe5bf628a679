"""KnownFiles: tensors whose decoded bytes sit in files on disk (the files a version was
committed from or checked out to), so a fresh process reads a delta's reference from
such a file instead of decoding its chain cold.

A cache, never a source of truth: a record (path, size, mtime_ns, inode, device, and
per tensor object its byte range in the file) only says where to look. What is encoded
against such bytes is kept only once they hash to what they must be: a tensor of one
block is checked whole against its object id (BLAKE3 of the decoded bytes, as every id)
before it is used; the blocks of a larger tensor are used as the encoder reads them, and
hashed in order on the way (`Pending`: one read and one hash of the reference, where a
check first read it whole and then hashed every block again), and the encoder keeps
its result only when `Pending.verify` finds the whole was the object's bytes, else
encodes again from the store. A file that changed, was truncated or was replaced fails
the stat check or the hash, and the reader decodes the chain as it would without this
cache. The record lives in the registry folder (cache/files.json),
newest files last, written by atomic rename; losing it costs only speed.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from .atomic import atomic_write
from .codec.buffers import POOL, Bytes
from .errors import StorageError
from .manifest import SegmentRef

MAX_FILES = 16  # the files remembered: a few checkpoints back, of a few models
FORMAT = 1
# Blocks a Pending check copies while an earlier block is still being read (two
# encoding threads are at most a block or two apart); any further one is read again
# from the file by `verify`.
HOLD = 2


@dataclass(frozen=True)
class Where:
    path: str
    ident: tuple[int, int, int, int]  # size, mtime_ns, inode, device when recorded
    offset: int
    length: int


def ident_of(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def known_tensors(segments: Sequence[SegmentRef], min_bytes: int) -> list[tuple[str, int, int]]:
    """(object id, offset, length) of a file's tensor segments of MIN_BYTES or more
    (smaller ones are stored whole: never a delta's reference)."""
    out, off = [], 0
    for s in segments:
        if s.tensor is not None and s.size >= min_bytes:
            out.append((s.id, off, s.size))
        off += s.size
    return out


class KnownFiles:
    """Where tensor objects' bytes may be found on disk (see the module's doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path  # the JSON record
        self._where: dict[str, Where] | None = None  # read on first lookup
        self._noted: list[dict[str, Any]] = []  # files to add at save()
        self._dead: set[str] = set()  # files found changed in this process
        self._lock = threading.Lock()

    # ---- reading
    def _load(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return []
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return []
        files = doc.get("files")
        return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []

    def _index(self) -> dict[str, Where]:
        if self._where is None:
            where: dict[str, Where] = {}
            for f in self._load():  # newest last: a newer file wins
                try:
                    ident = (int(f["size"]), int(f["mtime_ns"]), int(f["ino"]), int(f["dev"]))
                    for oid, off, n in f["tensors"]:
                        where[str(oid)] = Where(str(f["path"]), ident, int(off), int(n))
                except (KeyError, TypeError, ValueError):
                    continue  # a damaged entry: skip it
            self._where = where
        return self._where

    def read_block(self, oid: str, i: int, block_bytes: int, nblocks: int,
                   out: memoryview, check: Pending | None = None) -> bool:
        """Read block i (BLOCK_BYTES each, NBLOCKS in all; len(OUT) bytes) of tensor
        object OID from a known file into OUT; False when no file holds it unchanged
        (OUT's contents are then undefined). A single block is verified here; a block
        of a larger tensor only through CHECK (`pending`), which it feeds: without one
        it is not read."""
        with self._lock:
            w = self._index().get(oid)
        if w is None or w.path in self._dead:
            return False
        lo = i * block_bytes
        if lo + len(out) > w.length or (i == nblocks - 1 and lo + len(out) != w.length):
            return False
        if nblocks == 1:
            return (self._read(w, w.offset, out)
                    and blake3.blake3(out).hexdigest() == oid)
        if check is None or check.oid != oid or check.where != w:
            return False
        if not self._read(w, w.offset + lo, out):
            return False
        check.add(i, out)
        return True

    def pending(self, oid: str, block_bytes: int) -> Pending | None:
        """The check an encode's reads of multi-block OID feed (see Pending), or None
        when no file is known to hold OID unchanged, or OID is a single block."""
        with self._lock:
            w = self._index().get(oid)
        if w is None or w.length <= block_bytes or w.path in self._dead:
            return None
        return Pending(self, oid, w, block_bytes)

    def _read(self, w: Where, offset: int, out: memoryview) -> bool:
        """Fill OUT from OFFSET of W's file, if it is still the file recorded."""
        try:  # O_NONBLOCK: a FIFO put in the file's place must not block the open
            fd = os.open(w.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            self._dead.add(w.path)
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or ident_of(st) != w.ident:
                self._dead.add(w.path)
                return False
            return os.preadv(fd, [out], offset) == len(out)
        except OSError:
            return False
        finally:
            os.close(fd)

    # ---- recording
    def note(self, path: Path, st: os.stat_result, tensors: list[tuple[str, int, int]]) -> None:
        """Remember that PATH (as stat ST describes it) holds TENSORS (object id, offset,
        length); written by save()."""
        if tensors:
            s = ident_of(st)
            self._noted.append({"path": str(path.resolve()), "size": s[0], "mtime_ns": s[1],
                                "ino": s[2], "dev": s[3],
                                "tensors": [list(t) for t in tensors]})

    def save(self) -> None:
        """Add the noted files to the record (re-read first: another process may have
        added its own). Best effort: a cache that cannot be written is only slower."""
        if not self._noted:
            return
        noted, self._noted = self._noted, []
        paths = {f["path"] for f in noted}
        files = [f for f in self._load() if f.get("path") not in paths] + noted
        body = json.dumps({"format": FORMAT, "files": files[-MAX_FILES:]},
                          separators=(",", ":")).encode()
        try:
            self.path.parent.mkdir(exist_ok=True)
            atomic_write(self.path, body, mode=0o644, fsync=False)
        except (OSError, StorageError):
            pass
        self._where = None


class Pending:
    """One encode's reads of a multi-block tensor from a file, used before they are
    checked: each block read is hashed in order (BLAKE3 of the whole, as the object id)
    by whichever thread brings the next one; a block read ahead of its turn is copied
    (up to HOLD of them). `verify`, after the encode's last block, hashes whatever was
    not (blocks not read, or read from elsewhere) from the file and says whether the
    whole was OID's bytes; if not, the file is given up and the encode is done again."""

    def __init__(self, files: KnownFiles, oid: str, where: Where, block_bytes: int) -> None:
        self.files = files
        self.oid = oid
        self.where = where
        self.block_bytes = block_bytes
        self._h = blake3.blake3()
        self._next = 0  # blocks hashed, in order
        self._held: dict[int, tuple[Bytes, int]] = {}  # block -> (pooled copy, length)
        self._busy = False  # a thread is hashing: the others only leave their block
        self._closed = False  # verified: nothing is added any more
        self._cond = threading.Condition()

    def add(self, i: int, data: memoryview) -> None:
        with self._cond:
            if self._closed or i < self._next or i in self._held:
                return  # read again (a retry): hashed or held already
            if self._busy or i != self._next:
                if len(self._held) < HOLD:
                    copy = POOL.take(len(data))
                    memoryview(copy)[: len(data)] = data
                    self._held[i] = (copy, len(data))
                return
            self._busy = True
        self._drain(data)

    def _drain(self, data: memoryview) -> None:
        """Hash DATA (the next block), then any held blocks that follow it."""
        piece: memoryview | None = data
        lease: Bytes | None = None
        while piece is not None:
            self._h.update(piece)  # outside the lock: the other thread reads meanwhile
            if lease is not None:
                POOL.give(lease)
            with self._cond:
                self._next += 1
                held = self._held.pop(self._next, None)
                if held is None:
                    self._busy = False
                    self._cond.notify_all()
                    return
            lease = held[0]
            piece = memoryview(lease)[: held[1]]

    def verify(self) -> bool:
        """Whether every byte of the file's range was OID's (reading what was not hashed
        yet); on a mismatch the file is not used again in this process."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._closed = True
        w, bb = self.where, self.block_bytes
        lease = POOL.take(bb)
        try:
            for lo in range(self._next * bb, w.length, bb):
                i = lo // bb
                held = self._held.pop(i, None)
                if held is not None:
                    self._h.update(memoryview(held[0])[: held[1]])
                    POOL.give(held[0])
                    continue
                piece = memoryview(lease)[: min(bb, w.length - lo)]
                if not self.files._read(w, w.offset + lo, piece):
                    return False
                self._h.update(piece)
        finally:
            POOL.give(lease)
            for copy, _ in self._held.values():
                POOL.give(copy)
            self._held.clear()
        ok = self._h.hexdigest() == self.oid
        if not ok:
            self.files._dead.add(w.path)
        return ok
