"""The files a commit reads (`collect_files`), and their sha256 hashed early.

A one-shot `modelvc commit` spends its first ~0.1 s importing (numpy, the codec, the
registry) on one core. `start_sha256` hashes the files on a thread of their own meanwhile
(hashlib and preadv release the GIL): the commit then takes each file's digest from it
(`claim`, then `digest_of` once the file is encoded: a hash still under way never holds
up the encode) instead of reading the whole file a second time beside its encode.

A digest is used only for the file as the commit opened it: its stat (size, mtime_ns,
inode, device) must be the same before and after the early hash and before and after the
commit read it (FileStorer checks the latter as it always did). Anything else, and the
commit hashes the file itself. This module imports nothing heavy, so the CLI starts it
before the registry is loaded.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from .errors import PathNotFound, UsageError

SKIP_NAMES = frozenset({".git", ".modelvc", "__pycache__", ".DS_Store"})
CHUNK = 1 << 20  # one reused buffer: fresh memory faults cost more than the hashing

Ident = tuple[int, int, int, int]  # size, mtime_ns, inode, device

_lock = threading.Lock()
_early: dict[str, Future[tuple[Ident, str] | None]] = {}  # absolute path -> its digest


def ident(st: os.stat_result) -> Ident:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def collect_files(path: Path, *, skipped: list[str] | None = None
                  ) -> list[tuple[str, Path]]:
    """(posix relative path, absolute path) of every regular file, sorted.

    Symbolic links are followed, to files and to folders alike, and stored as what they
    point to (a Hugging Face cache snapshot is links into ../../blobs/); a link to a
    folder that holds it (a cycle) is refused. Entries named in SKIP_NAMES are never
    stored: their relative paths (folders with a trailing /) are added to SKIPPED."""
    if not path.exists():
        raise PathNotFound(f"{str(path)!r} does not exist", hint="check the path you passed")
    if path.is_file():
        return [(path.name, path)]
    out: list[tuple[str, Path]] = []
    st = path.stat()
    _walk(path, "", {(st.st_dev, st.st_ino)}, out, skipped if skipped is not None else [])
    if not out:
        raise UsageError(f"{path} holds no files to commit")
    return sorted(out)


def _walk(folder: Path, rel: str, ancestors: set[tuple[int, int]],
          out: list[tuple[str, Path]], skipped: list[str]) -> None:
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        p = Path(e.path)
        if e.name in SKIP_NAMES:
            skipped.append(f"{rel}{e.name}/" if e.is_dir() else f"{rel}{e.name}")
            continue
        if not os.path.exists(p):  # exists() follows links: only a broken one is false
            raise PathNotFound(f"{p} is a broken symbolic link",
                               hint="remove it or make it point to a file")
        if e.is_dir():  # follows a link
            st = p.stat()
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                raise UsageError(
                    f"{p} is a symbolic link to {os.path.realpath(p)}, a folder that holds "
                    "it: following it would never end",
                    hint="remove the link, or commit the folder it points to instead")
            _walk(p, f"{rel}{e.name}/", ancestors | {key}, out, skipped)
        elif e.is_file():  # follows a link; sockets, pipes and devices are not files
            out.append((f"{rel}{e.name}", p))


def start_sha256(paths: Sequence[Path]) -> None:
    """Hash PATHS on a daemon thread, in the order given: the order the commit stores
    them (collect_files'), which waits for each file's digest after encoding it. Largest
    first made a folder's small first file (`config.json`) wait for the whole checkpoint's
    hash before the checkpoint's encode could start (~0.05 s of a 91 MB delta commit)."""
    todo: list[tuple[str, Future[tuple[Ident, str] | None]]] = []
    with _lock:
        for p in paths:
            key = os.path.abspath(p)
            if key not in _early:
                fut: Future[tuple[Ident, str] | None] = Future()
                _early[key] = fut
                todo.append((key, fut))
    if todo:
        threading.Thread(target=_hash_all, args=(todo,), name="modelvc-sha256",
                         daemon=True).start()


def claim(path: Path) -> Future[tuple[Ident, str] | None] | None:
    """The early hash of PATH if one was started (handed out once), without waiting
    for it: the commit encodes meanwhile and asks `digest_of` at the end."""
    with _lock:
        return _early.pop(os.path.abspath(path), None)


def digest_of(fut: Future[tuple[Ident, str] | None], st: os.stat_result) -> str | None:
    """The digest FUT hashed, when the file was then as stat ST describes it; else None."""
    got = fut.result()
    return got[1] if got is not None and got[0] == ident(st) else None


def early_sha256(path: Path, st: os.stat_result) -> str | None:
    """claim and digest_of at once (waiting for the hash if it is under way)."""
    fut = claim(path)
    return None if fut is None else digest_of(fut, st)


def _hash_all(todo: list[tuple[str, Future[tuple[Ident, str] | None]]]) -> None:
    buf = bytearray(CHUNK)
    for path, fut in todo:
        try:
            fut.set_result(_hash_one(path, memoryview(buf)))
        except BaseException:  # a digest not had early is hashed by the commit itself
            fut.set_result(None)


def _hash_one(path: str, buf: memoryview) -> tuple[Ident, str] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block us
    except OSError:
        return None
    try:
        before = os.fstat(fd)
        h = hashlib.sha256()
        off = 0
        while off < before.st_size:
            got = os.preadv(fd, [buf], off)
            if not got:
                return None
            h.update(buf[:got])
            off += got
        after = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    if ident(before) != ident(after) or off != after.st_size:
        return None
    return ident(after), h.hexdigest()
