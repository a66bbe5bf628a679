"""LocalStore: one read-only file per object under a two-character fan-out.

    root/ab/cdef0123...   (key "abcdef0123...")

Writes go through atomic_write, so concurrent writers of one key (threads or
processes) both succeed and leave one whole file: the content is the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..atomic import atomic_write, fsync_dir, is_temp_name, storage_error
from ..errors import ObjectNotFound, UsageError
from .base import ObjectInfo, check_key, is_valid_key

CHUNK = 1 << 20  # put_file streams in 1 MiB pieces
_FANOUT = frozenset(f"{i:02x}" for i in range(256))


class LocalStore:
    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:]

    def _file(self, key: str) -> str:
        """path() as a string: reads resolve hundreds of these per checkout."""
        check_key(key)
        return f"{self._root}/{key[:2]}/{key[2:]}"

    # writes

    def put(self, key: str, data: bytes) -> bool:
        return self._write(key, data, exist_ok=False)

    def put_many(self, items: list[tuple[str, bytes]]) -> list[bool]:
        return [self.put(k, data) for k, data in items]

    def put_file(self, key: str, src: BinaryIO) -> bool:
        return self._write(key, iter(lambda: src.read(CHUNK), b""), exist_ok=False)

    def replace(self, key: str, data: bytes) -> None:
        self._write(key, data, exist_ok=True)

    def _write(self, key: str, data: bytes | Iterable[bytes], *, exist_ok: bool) -> bool:
        path = self.path(key)
        if not exist_ok and path.exists():
            return False
        with _translated(path, "write"):
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o444, fsync=self._fsync)
        return True

    def delete(self, key: str) -> None:
        path = self.path(key)
        with _translated(path, "delete"):
            path.unlink(missing_ok=True)

    def touch(self, key: str) -> None:
        path = self.path(key)
        with _translated(path, "touch", key):
            os.utime(path)  # the owner may utime a read-only file

    # reads

    def get(self, key: str) -> bytes:
        path = self._file(key)
        with _translated(path, "read", key), open(path, "rb") as f:
            return f.read()

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        if start < 0 or length < 0:
            raise UsageError(f"invalid range start={start} length={length}")
        path = self._file(key)
        with _translated(path, "read", key):
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, length, start)
            finally:
                os.close(fd)

    def read_into(self, key: str, start: int, buf: memoryview) -> int:
        """Read bytes start.. of an object into buf; how many (fewer at the end)."""
        path = self._file(key)
        with _translated(path, "read", key):
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

    def get_tail(self, key: str, n: int) -> tuple[int, bytes]:
        """(size, last n bytes) with one open: how a tensor object's header is read."""
        path = self._file(key)
        with _translated(path, "read", key):
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                start = max(0, size - n)
                return size, os.pread(fd, size - start, start)
            finally:
                os.close(fd)

    def size(self, key: str) -> int:
        path = self._file(key)
        with _translated(path, "stat", key):
            return os.stat(path).st_size

    def has(self, key: str) -> bool:
        return os.path.exists(self._file(key))

    def has_many(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if self.has(key)}

    def list(self) -> Iterator[ObjectInfo]:
        for folder in self._fanout_dirs():
            for entry in _scandir(folder):
                key = folder.name + entry.name
                if is_temp_name(entry.name) or not is_valid_key(key):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                yield ObjectInfo(key, st.st_size, st.st_mtime)

    def flush(self, keys: Iterable[str]) -> None:
        """Make objects written with fsync=False durable: fsync each file, then each
        fan-out folder once. Batched so the disk sees one stream of writes instead of
        an fsync per object; the registry calls it before recording a version."""
        folders: set[Path] = set()
        for key in keys:
            path = self.path(key)
            with _translated(path, "sync", key):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            folders.add(path.parent)
        for folder in folders:
            with _translated(folder, "sync"):
                fsync_dir(folder)

    def cleanup_temp(self, older_than_seconds: float) -> int:
        """Remove temp files left by crashed writers; returns how many were removed.

        Only files older than `older_than_seconds` go, so a live writer keeps its own.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for folder in self._fanout_dirs():
            for entry in _scandir(folder):
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

    def _fanout_dirs(self) -> Iterator[Path]:
        for entry in _scandir(self.root):
            if entry.name in _FANOUT and entry.is_dir():
                yield Path(entry.path)


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, folder, "list") from exc


class _translated:
    """OSError -> ObjectNotFound (when reading `key`) or StorageError/DiskFull.

    A class, not @contextmanager: reads enter one per block, and a generator-based
    context costs more than the read itself."""

    __slots__ = ("action", "key", "path")

    def __init__(self, path: Path | str, action: str, key: str | None = None) -> None:
        self.path, self.action, self.key = path, action, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or not isinstance(exc, OSError):
            return
        if isinstance(exc, FileNotFoundError) and self.key is not None:
            folder = os.path.dirname(os.path.dirname(os.fspath(self.path)))
            raise ObjectNotFound(f"object {self.key} is missing from {folder}") from exc
        raise storage_error(exc, self.path, self.action) from exc
