"""The local disk: LocalBackend (files under a folder) and LocalStore (packed on it).

    root/ab/cdef0123...             a loose object (key "abcdef0123...")
    root/packs/<id>.<nonce>         a pack of small objects (see packed.py)

Writes go through atomic_write, so concurrent writers of one name (threads or
processes) both succeed and leave one whole file: the content is the same. Files are
read-only (0444). With fsync=False (how the registry opens its store) a loose object is
written without fsync and `flush` makes a commit's objects durable in one batch; packs
and tombstones are fsynced when written (one file and one folder fsync per pack).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ..atomic import atomic_write, fsync_dir, is_temp_name, storage_error
from ..errors import ObjectNotFound, UsageError
from .backend import Capabilities, Entry
from .base import check_key
from .packed import PackedStore

CHUNK = 1 << 20  # put_file streams in 1 MiB pieces
LOCAL_MEMBER_MAX = 8 << 20


class LocalBackend:
    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._fsync = fsync
        self.caps = Capabilities(local=True, deferred_sync=not fsync)

    def where(self) -> str:
        return self._root

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    # writes

    def put(self, name: str, data: bytes, *, exclusive: bool = True,
            durable: bool = False) -> bool:
        return self._write(name, data, exclusive=exclusive, durable=durable)

    def put_parts(self, name: str, parts: Sequence[bytes]) -> bool:
        """A durable `put` of the concatenation of PARTS, written piece by piece."""
        return self._write(name, parts, exclusive=True, durable=True)

    def put_file(self, name: str, src: BinaryIO) -> bool:
        return self._write(name, iter(lambda: src.read(CHUNK), b""), exclusive=True,
                           durable=False)

    def _write(self, name: str, data: bytes | Iterable[bytes], *, exclusive: bool,
               durable: bool) -> bool:
        path = Path(self._path(name))
        if exclusive and path.exists():
            return False
        with _translated(path, "write"):
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o444, fsync=self._fsync or durable)
        return True

    def delete(self, names: Iterable[str]) -> None:
        for name in names:
            path = self._path(name)
            with _translated(path, "delete"):
                Path(path).unlink(missing_ok=True)

    def touch(self, name: str) -> None:
        path = self._path(name)
        with _translated(path, "touch", name):
            os.utime(path)  # the owner may utime a read-only file

    def sync(self, names: Iterable[str]) -> None:
        """fsync each file, then each folder once: the disk sees one stream of writes
        instead of an fsync per object."""
        folders: set[str] = set()
        for name in names:
            path = self._path(name)
            with _translated(path, "sync", name):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            folders.add(os.path.dirname(path))
        for folder in folders:
            with _translated(folder, "sync"):
                fsync_dir(Path(folder))

    # reads

    def get(self, name: str) -> bytes:
        path = self._path(name)
        with _translated(path, "read", name), open(path, "rb") as f:
            return f.read()

    def get_range(self, name: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        path = self._path(name)
        with _translated(path, "read", name):
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, length, start)
            finally:
                os.close(fd)

    def read_into(self, name: str, start: int, buf: memoryview) -> int:
        """Read bytes start.. of a file into buf; how many (fewer at the end)."""
        path = self._path(name)
        with _translated(path, "read", name):
            fd = os.open(path, os.O_RDONLY)
            try:
                got = 0
                while got < len(buf):
                    k = os.preadv(fd, [buf[got:]], start + got)
                    if k == 0:
                        break
                    got += k
                return got
            finally:
                os.close(fd)

    def get_tail(self, name: str, n: int) -> tuple[int, bytes]:
        """(size, last n bytes) with one open."""
        path = self._path(name)
        with _translated(path, "read", name):
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                start = max(0, size - n)
                return size, os.pread(fd, size - start, start)
            finally:
                os.close(fd)

    def stat(self, name: str) -> Entry:
        path = self._path(name)
        with _translated(path, "stat", name):
            st = os.stat(path)
        return Entry(name, st.st_size, st.st_mtime)

    def present(self, names: list[str]) -> set[str]:
        return {n for n in names if os.path.exists(self._path(n))}

    def list(self, prefix: str) -> Iterator[Entry]:
        """Files in the folders one level down (the fan-out and packs/) whose name
        starts with `prefix`."""
        folder, _, start = prefix.rpartition("/")
        folders = [folder] if folder else [e.name for e in _scandir(self._root) if e.is_dir()]
        for sub in folders:
            for entry in _scandir(f"{self._root}/{sub}"):
                if is_temp_name(entry.name) or not entry.name.startswith(start):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                if entry.is_file():
                    yield Entry(f"{sub}/{entry.name}", st.st_size, st.st_mtime)

    def cleanup_temp(self, older_than_seconds: float) -> int:
        """Remove temp files left by crashed writers; returns how many were removed.
        Only files older than `older_than_seconds` go, so a live writer keeps its own."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for sub in _scandir(self._root):
            if not sub.is_dir():
                continue
            for entry in _scandir(sub.path):
                if not is_temp_name(entry.name):
                    continue
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:  # its writer finished or another gc got it
                    continue
                except OSError as exc:
                    raise storage_error(exc, entry.path, "remove") from exc
        return removed

    def close(self) -> None:
        pass


class LocalStore(PackedStore):
    """Objects in a folder: loose files and packs (see packed.py)."""

    # A commit's objects up to 8 MiB share pack files: the tensors of a typical
    # fine-tune (a few MB each) then cost no fsync of their own.
    member_max = LOCAL_MEMBER_MAX
    # A commit's held objects are written as a pack once this many bytes are held, on a
    # thread beside the encode (objects/pending.py), not all after the last block.
    pack_early = LOCAL_MEMBER_MAX

    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.local = LocalBackend(root, fsync=fsync)
        super().__init__(self.local)
        self.root = self.local.root

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Where the object is (or would be) stored loose."""
        check_key(key)
        return self.root / key[:2] / key[2:]

    def cleanup_temp(self, older_than_seconds: float) -> int:
        return self.local.cleanup_temp(older_than_seconds)


def _scandir(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, folder, "list") from exc


class _translated:
    """OSError -> ObjectNotFound (when reading `name`) or StorageError/DiskFull.

    A class, not @contextmanager: reads enter one per block, and a generator-based
    context costs more than the read itself."""

    __slots__ = ("action", "name", "path")

    def __init__(self, path: Path | str, action: str, name: str | None = None) -> None:
        self.path, self.action, self.name = path, action, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or not isinstance(exc, OSError):
            return
        if isinstance(exc, FileNotFoundError) and self.name is not None:
            raise ObjectNotFound(f"{self.name} is missing") from exc
        raise storage_error(exc, self.path, self.action) from exc
