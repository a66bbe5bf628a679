"""Upload sessions: a large object travels in chunks into a spool file on the
receiver, so an interrupted transfer resumes where it stopped instead of at byte 0.

    root/<kind>/<blake3(subject)[:32]>/<object id>.<total size>

One spool file per (subject, kind, object id, size): `kind` is "object" (stored bytes
of a push/pull) or "raw" (a commit's raw segment; same id, other bytes). Its length is
what the receiver holds. A chunk is appended at an offset <= that length (a smaller
offset truncates: the sender decides), never beyond it (SessionMoved says what is held).
A chunk with a BLAKE3 digest that does not match is refused before it touches the file
(ChunkRefused). Nothing in a session is an object: the caller verifies the complete
spool (decoded BLAKE3 against the id) and only then stores it; a failed verification
discards it, so the next attempt starts cleanly at 0, while a failed store (S3 down)
keeps it for the next attempt to store without re-sending. Each session is the subject's
own: another subject's chunks go into its own spool, never into this one.

Over HTTP a request carries a batch of chunks as frames (modelvc.wire.frames), each
appended as it arrives; after a refused frame the receiver reads (drops) the rest of
the request and then answers, so the sender always gets the answer.

Every operation on a spool holds an flock on it, so server processes sharing the
registry folder (and threads of one process) take turns. Sessions untouched for `ttl`
seconds are deleted (`expire`, run at most every EXPIRE_EVERY seconds on a new query).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from ..errors import ChunkRefused, CorruptObject, DiskFull, SessionMoved, StorageError, UsageError
from ..objects.base import check_key
from ..wire.frames import digest

KINDS = ("object", "raw")
HASH_PIECE = 8 << 20


@dataclass
class Received:
    """What this process saw of one session (for logs and tests)."""

    first_offset: int  # where this process's part of the upload started
    received: int = 0  # chunk bytes this process appended


class Sessions:
    """The upload sessions under `root` (thread-safe; several processes may share it)."""

    EXPIRE_EVERY = 600.0
    TRACKED = 1024  # sessions whose Received counts are kept in memory

    def __init__(self, root: Path, ttl: float) -> None:
        self.root = Path(root)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._expired = -math.inf
        self._seen: OrderedDict[Path, Received] = OrderedDict()

    # ---- naming
    def path(self, subject: str, kind: str, oid: str, size: int) -> Path:
        if kind not in KINDS:
            raise UsageError(f"unknown upload session kind {kind!r}")
        if size < 0:
            raise UsageError("an upload's size cannot be negative")
        who = blake3.blake3(subject.encode()).hexdigest()[:32]
        return self.root / kind / who / f"{check_key(oid)}.{int(size)}"

    # ---- queries
    def offset(self, subject: str, kind: str, oid: str, size: int) -> int:
        """How many bytes of this upload the receiver holds (0: none)."""
        self.maybe_expire()
        try:
            return min(self.path(subject, kind, oid, size).stat().st_size, size)
        except FileNotFoundError:
            return 0

    def seen(self, subject: str, kind: str, oid: str, size: int) -> Received | None:
        with self._lock:
            return self._seen.get(self.path(subject, kind, oid, size))

    # ---- writing
    def append(self, subject: str, kind: str, oid: str, size: int, offset: int,
               data: bytes | bytearray, expected: str | None = None) -> int:
        """Write DATA at OFFSET (<= what is held); the new length. An EXPECTED digest
        (BLAKE3 hex of DATA) that does not match refuses the chunk before anything is
        written."""
        path = self.path(subject, kind, oid, size)
        if offset < 0 or offset + len(data) > size:
            raise UsageError(f"chunk [{offset}, {offset + len(data)}) is outside the "
                             f"{size}-byte upload")
        if not data and offset != size:
            raise UsageError("an empty chunk")
        if expected is not None and digest(data) != expected.lower():
            raise ChunkRefused(f"a chunk of {oid[:12]} at {offset} does not match its "
                                "digest (damaged in transit?); it was not kept",
                                hint="send that chunk again")
        with self._locked(path, create=True) as fd:
            held = os.fstat(fd).st_size
            if offset > held:
                raise SessionMoved(held=held)
            if offset < held:
                os.ftruncate(fd, offset)
            _pwrite_all(fd, data, offset)
            self._track(path, offset, data)
            return offset + len(data)

    @contextlib.contextmanager
    def complete(self, subject: str, kind: str, oid: str, size: int) -> Iterator[Path]:
        """The complete spool, locked, for the caller to verify and store. It is removed
        once stored, or when its content is refused (CorruptObject: the next attempt
        restarts at 0). Any other failure (the store is down, the disk full) is not
        the upload's fault: the spool stays, and the next attempt, finding it whole,
        stores it without sending a byte again (verified again first)."""
        path = self.path(subject, kind, oid, size)
        with self._locked(path, create=False) as fd:
            held = os.fstat(fd).st_size
            if held != size:
                raise SessionMoved(held=held)
            try:
                yield path
            except CorruptObject:
                self._remove(path)
                raise
            self._remove(path)

    def _remove(self, path: Path) -> None:
        self._forget(path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    @staticmethod
    def digest(path: Path) -> str:
        """BLAKE3 of a spool, read back from the file: chunks may have come from
        several processes (and a rewrite from another may have replaced some), so
        only the file itself says what will be stored."""
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        with path.open("rb") as f:
            while piece := f.read(HASH_PIECE):
                h.update(piece)
        return h.hexdigest()

    # ---- expiry
    def maybe_expire(self) -> int:
        with self._lock:
            if time.monotonic() - self._expired < self.EXPIRE_EVERY:
                return 0
            self._expired = time.monotonic()
        return self.expire()

    def expire(self, now: float | None = None) -> int:
        """Delete sessions untouched for `ttl` seconds (skipping any being written);
        returns how many."""
        limit = (time.time() if now is None else now) - self.ttl
        with self._lock:
            self._expired = time.monotonic()
        removed = 0
        for kind in KINDS:
            base = self.root / kind
            if not base.is_dir():
                continue
            for sub in list(base.iterdir()):
                for path in list(sub.iterdir()) if sub.is_dir() else []:
                    with contextlib.suppress(OSError):
                        if path.stat().st_mtime >= limit:
                            continue
                        if self._try_remove(path, limit):
                            removed += 1
                with contextlib.suppress(OSError):
                    sub.rmdir()  # only when empty
        return removed

    def _try_remove(self, path: Path, limit: float) -> bool:
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use right now: not stale
            if os.fstat(fd).st_mtime >= limit or not _same_file(fd, path):
                return False
            self._forget(path)
            path.unlink()
            return True
        finally:
            os.close(fd)

    # ---- internals
    @contextlib.contextmanager
    def _locked(self, path: Path, *, create: bool) -> Iterator[int]:
        """An exclusive flock on the spool at PATH (the file that is there once locked:
        a session removed while we waited is not written through a stale handle)."""
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the upload folder {path.parent}: {exc}"
                                   ) from exc
        while True:
            try:
                fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
            except FileNotFoundError:
                if create:  # the folder was removed by expiry meanwhile
                    path.parent.mkdir(parents=True, exist_ok=True)
                    continue
                raise SessionMoved(held=0) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _same_file(fd, path):
                    yield fd
                    return
            finally:
                os.close(fd)
            if not create:
                raise SessionMoved(held=0)

    def _track(self, path: Path, offset: int, data: bytes | bytearray) -> None:
        with self._lock:
            seen = self._seen.get(path)
            if seen is None or offset < seen.first_offset:
                seen = self._seen[path] = Received(offset)
            seen.received += len(data)
            self._seen.move_to_end(path)
            while len(self._seen) > self.TRACKED:
                self._seen.popitem(last=False)

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._seen.pop(path, None)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"no space left for an upload chunk: {exc}") from exc
        raise StorageError(f"cannot write an upload chunk: {exc}") from exc
