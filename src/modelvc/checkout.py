"""Rebuild a version's files byte for byte, verified, and load tensors on demand."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import blake3

from .codec import numpy_dtype
from .codec.buffers import POOL, Bytes
from .errors import (
    AlreadyExists,
    Corrupt,
    CorruptObject,
    DiskFull,
    ObjectNotFound,
    PathNotFound,
    StorageError,
    UsageError,
)
from .filecache import known_tensors
from .manifest import FileEntry, Manifest, SegmentRef
from .pipeline import windowed
from .storage import MIN_DELTA_BYTES, ObjectIO

# Segments decoded ahead of the writer. A model file is mostly tensors of one block or
# less; with only 4 in flight the pool idled behind a slow one (8: ~15% faster checkouts
# of exports; memory is 8 such blocks at most, multi-block tensors stream).
AHEAD = 8
# What to do when a read meets a damaged or missing object (see `reading`)
READ_HINT = ("run `modelvc verify` to see which objects are damaged and which versions "
             "they break, then `modelvc verify --repair` (it rebuilds what still decodes "
             "and says what to do with the rest)")


@contextmanager
def reading(what: str) -> Iterator[None]:
    """Name WHAT the user asked for (version, file, tensor) in the error of a damaged or
    missing object met while reading it: the object id alone says nothing to them. An
    error that says what to do already (an object replaced mid-read: run it again)
    keeps its hint; the others get READ_HINT. An error named so already (a server's,
    relayed by a remote checkout or load) is not named twice."""
    try:
        yield
    except (CorruptObject, ObjectNotFound) as exc:
        if not exc.message.startswith(f"{what}: "):
            exc.message = f"{what}: {exc.message}"
        exc.args = (exc.message,)
        exc.hint = exc.hint or READ_HINT
        raise


@dataclass(frozen=True)
class CheckoutResult:
    dest: Path
    files: int
    bytes: int
    others: int = 0  # files DEST held that the version does not (--force: left alone)


def safe_relpath(rel: str) -> PurePosixPath:
    """Refuse manifest paths that would escape the destination."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise Corrupt(f"manifest holds an unsafe path {rel!r}")
    return p


def checkout(
    io: ObjectIO,
    pool: ThreadPoolExecutor,
    manifest: Manifest,
    dest: Path,
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    label: str = "the version",
) -> CheckoutResult:
    """Write the version into DEST (a folder; for a one-file version, DEST may be a file).
    LABEL (`m@v3`) names it in errors. All or nothing (see `Stage`)."""
    tick = progress or (lambda n: None)
    targets, others = plan_targets(manifest, dest, force=force, label=label)
    total = 0
    with Stage() as stage:
        for entry, target in targets:
            with reading(f"{label}, {entry.path}"):
                _write_file(io, pool, entry, target, tick, stage)
            total += entry.size
    return CheckoutResult(dest, len(targets), total, others)


def plan_targets(manifest: Manifest, dest: Path, *, force: bool, label: str
                 ) -> tuple[list[tuple[FileEntry, Path]], int]:
    """Where each file of the version goes, and how many other files DEST holds (at
    most OTHERS_COUNTED are counted). Without FORCE a destination holding any file is
    refused: what it holds would be overwritten, or mixed with the version's files (git
    refuses a non-empty clone destination likewise). FORCE overwrites the version's
    files and leaves every other file alone (reported): a checkout never deletes what
    it did not write (`checkout m@v2 . --force` in a project folder must not empty it)."""
    single = manifest.kind == "file" and len(manifest.files) == 1
    if single and not dest.is_dir() and (dest.suffix or dest.exists()):
        targets = [(manifest.files[0], dest)]
    else:
        if dest.exists() and not dest.is_dir():
            raise AlreadyExists(
                f"{dest} is a file, and this version is a folder of {len(manifest.files)} files",
                hint="check it out into a folder (a new or empty one)")
        targets = [(f, dest.joinpath(*safe_relpath(f.path).parts)) for f in manifest.files]
    wanted = {t for _, t in targets}
    extra = _others(dest, wanted) if dest.is_dir() else []
    if force:
        return targets, len(extra)
    if extra:
        names = ", ".join(str(p.relative_to(dest)) for p in extra[:3])
        many = f"{OTHERS_COUNTED}+" if len(extra) >= OTHERS_COUNTED else str(len(extra))
        raise AlreadyExists(
            f"{dest} holds {many} file(s) {label} does not have ({names}"
            + (", ..." if extra[3:] else "") + "): checking out into it would mix them "
            "with the version's files",
            hint="choose a new or empty folder (or pass --force to write the version's "
                 "files there anyway; no other file is removed)")
    clash = [str(t) for _, t in targets if t.exists()]
    if clash:
        raise AlreadyExists(
            f"{clash[0]} already exists" + (f" (and {len(clash) - 1} more)" if clash[1:] else ""),
            hint="choose a new or empty destination, or pass --force to overwrite these")
    return targets, 0


OTHERS_COUNTED = 1000  # a destination's other files counted (a home folder has 100,000s)


def _others(folder: Path, wanted: set[Path]) -> list[Path]:
    """Up to OTHERS_COUNTED files under FOLDER that are not WANTED (links as
    themselves, not followed)."""
    out: list[Path] = []
    for dirpath, _, filenames in os.walk(folder):
        for n in sorted(filenames):
            p = Path(dirpath) / n
            if p not in wanted:
                out.append(p)
                if len(out) >= OTHERS_COUNTED:
                    return out
    return out


class Stage:
    """A checkout, all or nothing: each file is written under a temp name beside its
    target and verified; only when every file is written are they renamed into place.
    A failure removes the temp files and the folders the checkout created: the
    destination is left as it was. No extra copy of the data, only renames (a
    checkout's speed is benchmarked)."""

    def __init__(self) -> None:
        self._done: list[tuple[Path, Path]] = []  # (temp, target)
        self._made: list[Path] = []  # folders created, parents first

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self._finish()
        else:
            self._undo()

    @contextmanager
    def writing(self, target: Path) -> Iterator[BinaryIO]:
        """As `writing`, but the verified file waits under its temp name for the rest."""
        with _os_errors(target):
            self._mkdir(target.parent)
            tmp = target.parent / f".{target.name}.modelvc-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                with tmp.open("wb") as out:
                    yield out
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._done.append((tmp, target))

    def _mkdir(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            self._made.append(d)

    def _finish(self) -> None:
        for tmp, target in self._done:
            with _os_errors(target):
                os.replace(tmp, target)

    def _undo(self) -> None:
        for tmp, _ in self._done:
            tmp.unlink(missing_ok=True)
        for d in reversed(self._made):
            _rmdir_empty(d)


def _rmdir_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except OSError:
        return False


class _Changed(Exception):
    """A file's segments did not hash to their ids on the first write (see _write_file)."""


def _write_file(
    io: ObjectIO, pool: ThreadPoolExecutor, entry: FileEntry, target: Path,
    tick: Callable[[int], None], stage: Stage, *, again: bool = True,
) -> None:
    try:
        with stage.writing(target) as out:
            if not _write_segments(io, pool, entry, out, tick):
                if again:  # not kept: written once more below
                    raise _Changed
                _name_corrupt(io, entry)
            written = os.fstat(out.fileno())  # the target's once renamed into place
    except _Changed:
        # Another process may have replaced an object while it streamed (a stream that
        # restarts skips, unchecked, the bytes it had delivered: see iter_tensor), so
        # the file is written once more from what the store holds now.
        io.stale()
        _write_file(io, pool, entry, target, lambda n: None, stage, again=False)
        return
    if io.known is not None:  # a commit of a fine-tune of it reads its references here
        io.known.note(target, written, known_tensors(entry.segments, MIN_DELTA_BYTES))


def _write_segments(io: ObjectIO, pool: ThreadPoolExecutor, entry: FileEntry,
                    out: BinaryIO, tick: Callable[[int], None]) -> bool:
    """Write ENTRY's segments into OUT; whether they hashed to their ids."""
    written = 0
    exact = True
    # Small segments are decoded (and hashed) ahead on the pool; big tensors stream
    # block by block (their blocks decode in parallel) so memory stays bounded.
    for seg, data in windowed(pool, entry.segments, lambda s: (s, _read(io, s)),
                              window=AHEAD):
        if data is None:
            h = blake3.blake3()
            n = 0
            for part in io.iter_tensor(seg.id, verify=False, transient=True, checksum=False):
                out.write(part)
                h.update(part)
                n += len(part)
            exact = exact and h.hexdigest() == seg.id
        else:
            parts, leases, same = data
            n = 0
            for part in parts:
                out.write(part)
                n += len(part)
            for lease in leases:
                POOL.give(lease)
            exact = exact and same
        if n != seg.size:
            raise CorruptObject(f"object {seg.id[:12]} has {n} bytes, not {seg.size}")
        written += n
        tick(seg.size)
    return written == entry.size and exact


@contextmanager
def writing(target: Path) -> Iterator[BinaryIO]:
    """A checked-out file: written under a unique temp name in TARGET's folder and
    renamed over TARGET when the block ends without error (removed otherwise); a full
    disk is DiskFull, any other OSError StorageError. Not fsynced: a checkout is derived
    data (like git's work tree), re-created from the registry, and its callers verify
    it inside the block, before the rename. A whole checkout goes through `Stage`."""
    with Stage() as stage, stage.writing(target) as out:
        yield out


@contextmanager
def _os_errors(target: Path) -> Iterator[None]:
    """A full disk is DiskFull, any other OSError StorageError, naming TARGET."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"no space left writing {target}",
                           hint="free space on the destination's filesystem or choose "
                           "another destination") from exc
        raise StorageError(f"cannot write {target}: {exc.strerror}",
                           hint="choose a destination folder you can write to (missing "
                           "folders are created; none of its parents may be a file)"
                           ) from exc


def _read(io: ObjectIO, seg: SegmentRef
          ) -> tuple[list[bytes | memoryview], list[Bytes], bool] | None:
    """A segment decoded ahead: its parts, the pooled buffers to give back once they
    are written, and whether they hash to the segment's id; None for a tensor of several
    blocks (the writer streams and hashes it, its blocks decoding in parallel, their
    memory reused block after block).

    Each segment's bytes are checked against its id (BLAKE3, ~5x cheaper than the
    file's sha256 and spread over the pool): the segments tile the file, so together
    they are the file the manifest records, bit for bit. _name_corrupt then names the
    corrupt object. So the zstd frames' own checksums (XXH64) are not checked on the
    way (checksum=False: ~14 % of zstd's decode time); _name_corrupt's re-read checks
    them."""
    h = io.tensor_header(seg.id) if seg.tensor is not None else None
    if h is None:  # a byte segment, or a tensor stored first as a blob: bytes either way
        data = io.read_blob(seg.id, verify=False)
        return [data], [], blake3.blake3(data).hexdigest() == seg.id
    if len(h.blocks) > 1:
        return None
    block, lease = io.lease_block(seg.id, 0, checksum=False)
    return ([block], [lease] if lease is not None else [],
            blake3.blake3(block).hexdigest() == seg.id)


def _name_corrupt(io: ObjectIO, entry: FileEntry) -> None:
    """The file did not rebuild from its objects: re-read each one verified, uncached,
    to raise the error that names the corrupt one."""
    io.blocks.clear()  # decoded blocks of this file were not verified one by one
    for seg in entry.segments:
        for _ in io.iter_object(seg.id, seg.tensor is not None, cached=False):
            pass
    raise CorruptObject("the file does not rebuild from its recorded objects")


class TensorDict(Mapping[str, Any]):
    """Tensors of a version by name, decoded one at a time when accessed."""

    def __init__(self, io: ObjectIO, manifest: Manifest, *, framework: str = "numpy",
                 file: str | None = None, label: str = "the version") -> None:
        if framework not in ("numpy", "torch"):
            raise UsageError(f"unknown framework {framework!r}: use 'numpy' or 'torch'")
        self._io = io
        self._framework = framework
        self._label = label  # `m@v3`, in errors
        self._segs: dict[str, SegmentRef] = {}
        self._paths: dict[str, str] = {}  # tensor key -> its file
        if file is not None and all(f.path != file for f in manifest.files):
            names = ", ".join(f.path for f in manifest.files[:10])
            raise PathNotFound(f"the version has no file {file!r}",
                               hint=f"its files: {names}" + (" ..." if manifest.files[10:] else ""))
        many = len([f for f in manifest.files if any(f.tensors())]) > 1
        for f in manifest.files:
            if file is not None and f.path != file:
                continue
            for s in f.tensors():
                assert s.tensor is not None
                key = f"{f.path}:{s.tensor}" if many and file is None else s.tensor
                self._segs[key] = s
                self._paths[key] = f.path

    def __getitem__(self, name: str) -> Any:
        seg = self._segs[name]
        with self.reading(name):
            raw = self._io.read_tensor(seg.id)
        return to_array(raw, seg.dtype or "U8", seg.shape or (), self._framework)

    def __iter__(self) -> Iterator[str]:
        return iter(self._segs)

    def __len__(self) -> int:
        return len(self._segs)

    def info(self, name: str) -> SegmentRef:
        return self._segs[name]

    def reading(self, name: str) -> AbstractContextManager[None]:
        """Errors met reading tensor NAME name the version, its file and the tensor."""
        seg = self._segs[name]
        return reading(f"{self._label}, {self._paths[name]}, tensor {seg.tensor!r}")


def to_array(raw: bytes, dtype: str, shape: tuple[int, ...], framework: str = "numpy") -> Any:
    """Raw little-endian bytes -> numpy array (or torch tensor); BF16/F8 need torch."""
    import numpy as np  # a checkout writes files without numpy; loading arrays needs it

    npd = numpy_dtype(dtype)
    if framework == "torch":
        import torch

        tmap = {"BF16": torch.bfloat16, "F8_E4M3": torch.float8_e4m3fn,
                "F8_E5M2": torch.float8_e5m2}
        if dtype in tmap:
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            return flat.view(tmap[dtype]).reshape(shape)
        arr = np.frombuffer(raw, dtype=npd).reshape(shape).copy()
        return torch.from_numpy(arr)
    if npd is None:
        raise UsageError(f"numpy has no {dtype} dtype", hint="load with framework='torch'")
    return np.frombuffer(raw, dtype=npd).reshape(shape)
