"""Crash-safe file writes: temp name in the same folder, fsync, os.replace, fsync dir.

A reader (or a process killed with -9 mid-write) sees the old file or the whole new
one, never a partial file; a crash leaves at most a `.tmp-<pid>-<random>` file,
which `LocalStore.cleanup_temp` removes later. Temp names are unique per process
and call, so concurrent writers of one path never need a lock.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from .errors import DiskFull, StorageError

TEMP_PREFIX = ".tmp-"

__all__ = [
    "TEMP_PREFIX",
    "atomic_write",
    "atomic_writer",
    "fsync_dir",
    "is_temp_name",
    "storage_error",
    "temp_name",
]


def temp_name(path: Path) -> Path:
    """A fresh sibling temp path; the pid tells cleanup whose crash it was."""
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(8).hex()}")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def storage_error(exc: OSError, path: Path | str, action: str = "write") -> StorageError:
    """Translate an OSError at the storage boundary into the error tree."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on the device to {action} {path}",
                        hint="free some space (or run `modelvc gc --apply`) and retry")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        # a filesystem refusal the operator can fix, not the registry's PermissionDenied
        return StorageError(
            f"cannot {action} {path}: {exc.strerror}",
            hint="check the folder's permissions and that the filesystem is not read-only",
        )
    return StorageError(f"cannot {action} {path}: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    """Make a rename or create in `path` (a folder) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on folders; that is fine
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(
    path: Path, *, mode: int | None = 0o444, fsync: bool = True
) -> Iterator[BinaryIO]:
    """Yield a file to write; on clean exit it replaces `path`, on error it vanishes.

    OSErrors are raised as StorageError / DiskFull (the original is `__cause__`).
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise storage_error(exc, path) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write(
    path: Path,
    data: bytes | Iterable[bytes],
    *,
    mode: int | None = 0o444,
    fsync: bool = True,
) -> None:
    """Write `data` (bytes or an iterable of chunks) to `path` atomically."""
    with atomic_writer(path, mode=mode, fsync=fsync) as f:
        if isinstance(data, bytes | bytearray | memoryview):
            f.write(data)
        else:
            for chunk in data:
                f.write(chunk)


def _unlink_quietly(path: Path) -> None:
    with suppress(OSError):  # already gone, or cleanup_temp removes it later
        os.unlink(path)
