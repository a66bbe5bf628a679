"""KnownFiles: tensors whose decoded bytes sit in files on disk (the files a version was
committed from or checked out to), so a fresh process reads a delta's reference from
such a file instead of decoding its chain cold.

A cache, never a source of truth: a record (path, size, mtime_ns, inode, device, and
per tensor object its byte range in the file) only says where to look. Bytes are used
only after they hash to what they must be: a tensor of one block whole against its
object id (BLAKE3 of the decoded bytes, as every id); a tensor of several blocks is
first read whole once, its id checked and each block's BLAKE3 noted, then every block
is checked against its note when it is read. A file that changed, was truncated or
was replaced fails the stat check or the hash, and the reader decodes the chain as it
would without this cache. The record lives in the registry folder (cache/files.json),
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
from .codec.buffers import POOL
from .errors import StorageError
from .manifest import SegmentRef

MAX_FILES = 16  # the files remembered: a few checkpoints back, of a few models
FORMAT = 1


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
        self._digests: dict[str, list[bytes] | None] = {}  # multi-block: verified notes
        self._once: dict[str, threading.Lock] = {}  # per object: its notes made once
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
                   out: memoryview) -> bool:
        """Read block i (BLOCK_BYTES each, NBLOCKS in all; len(OUT) bytes) of tensor
        object OID from a known file into OUT, verified; False when no file holds it
        unchanged (OUT's contents are then undefined)."""
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
        notes = self._checked(oid, w, block_bytes)
        return (notes is not None and i < len(notes) and self._read(w, w.offset + lo, out)
                and blake3.blake3(out).digest() == notes[i])

    def prepare(self, oid: str, block_bytes: int) -> None:
        """Make the one-time whole check of a multi-block OID now (a delta's encoder
        asks for its reference and the reference's own reference on two threads at
        once; block by block, each block's encode would wait for both in turn)."""
        with self._lock:
            w = self._index().get(oid)
        if w is not None and w.length > block_bytes and w.path not in self._dead:
            self._checked(oid, w, block_bytes)

    def _checked(self, oid: str, w: Where, block_bytes: int) -> list[bytes] | None:
        """OID's block notes, made once per object (under its own lock, not the lock of
        every object: two objects are checked on two threads at once)."""
        with self._lock:
            once = self._once.setdefault(oid, threading.Lock())
        with once:
            if oid not in self._digests:
                self._digests[oid] = self._notes(oid, w, block_bytes)
            return self._digests[oid]

    def _notes(self, oid: str, w: Where, block_bytes: int) -> list[bytes] | None:
        """Each block's BLAKE3, from one read of the whole range whose BLAKE3 is OID."""
        whole = blake3.blake3()
        notes = []
        lease = POOL.take(block_bytes)
        try:
            for lo in range(0, w.length, block_bytes):
                piece = lease[: min(block_bytes, w.length - lo)].data
                if not self._read(w, w.offset + lo, piece):
                    return None
                whole.update(piece)
                notes.append(blake3.blake3(piece).digest())
        finally:
            POOL.give(lease)
        return notes if whole.hexdigest() == oid else None

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
