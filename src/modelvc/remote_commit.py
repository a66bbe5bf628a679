"""The write verbs of RemoteRegistry, mixed into it (a module of their own for size):
amend (files inline), and commit over HTTP: each file is planned and every segment
hashed locally (BLAKE3: its object id) in one sequential read, memory one buffer
whatever the tensors' sizes; only the raw segments the server lacks go up (4 in
parallel; one above a chunk in chunks into a resumable upload session), then the
server records the version from the file list (server/commits.py)."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from . import errors
from .client.transport import Transport
from .client.uploads import Session, resume
from .commit import collect_files
from .errors import NotFound
from .formats import Segment, plan_file
from .lineage import capture, with_extra
from .manifest import FileEntry, SegmentRef
from .meta.api import VersionRow
from .names import DEFAULT_BRANCH
from .wire import frames as wire_frames
from .wire.values import decode_as

if TYPE_CHECKING:
    from .api.run import Run
    from .formats.memory import MemFile

UPLOAD_THREADS = 4
CHUNK_BYTES = wire_frames.CHUNK_BYTES  # segments above this go up in chunks
HASH_PIECE = 8 << 20  # what a commit reads at a time to hash a segment
API = "/api/v1"


@dataclass(frozen=True)
class _Part:
    rel: str
    seg: Segment
    oid: str
    read: Callable[[int, int], bytes | memoryview]  # (offset in the segment, n) -> bytes


class RemoteWrites:
    _t: Transport
    last_upload_bytes: int
    # Provided by RemoteRegistry.
    _post: Callable[[str, dict[str, Any]], Any]
    _q: Callable[[str], str]
    resolve: Callable[..., VersionRow]

    def amend(self, model: str, *, branch: str | None = None, parent: str | None = None,
              add: Mapping[str, bytes | Path] | None = None, delete: Sequence[str] = (),
              delete_folders: Sequence[str] = (), message: str = "",
              author: str | None = None) -> VersionRow:
        """See Registry.amend; ADD goes inline (base64), bounded by the server's
        max_amend_mb (64 MiB of JSON by default; commit or push larger files).
        `author` is ignored: the server records the token's subject."""
        body = {"branch": branch, "parent": parent, "message": message,
                "add": {k: base64.b64encode(v if isinstance(v, bytes) else Path(v).read_bytes()
                                           ).decode() for k, v in (add or {}).items()},
                "delete": list(delete), "delete_folders": list(delete_folders)}
        return decode_as(VersionRow, self._post(f"/models/{self._q(model)}/amend", body))

    def commit(self, path: str | Path, *, model: str, branch: str | None = None,
               message: str = "", params: dict[str, Any] | None = None,
               metrics: dict[str, Any] | None = None, tags: Sequence[str] = (),
               parent: str | None = None, data: Sequence[str | Path] = (),
               author: str | None = None, cwd: str | Path | None = None,
               progress: Callable[[int, int], None] | None = None,
               lineage: dict[str, Any] | None = None, root: bool = False) -> VersionRow:
        """Record PATH as a new version of MODEL on the server (see Registry.commit).
        `author` is ignored: the server records the token's subject."""
        files = collect_files(Path(path))
        planned = [_plan(rel, p) for rel, p in files]
        return self._send(planned, model=model, branch=branch, message=message,
                          params=params, metrics=metrics, tags=tags, parent=parent, data=data,
                          cwd=cwd, progress=progress, lineage=lineage,
                          kind="file" if Path(path).is_file() else "folder", root=root)

    def commit_files(self, files: Mapping[str, Any], *, model: str, branch: str | None = None,
                     message: str = "", params: dict[str, Any] | None = None,
                     metrics: dict[str, Any] | None = None, tags: Sequence[str] = (),
                     parent: str | None = None, data: Sequence[str | Path] = (),
                     author: str | None = None, cwd: str | Path | None = None,
                     lineage: dict[str, Any] | None = None, root: bool = False
                     ) -> VersionRow:
        """See Registry.commit_files: planned and hashed in memory, then sent as `commit`
        sends a folder (only the segments the server lacks). `author` is ignored."""
        from .formats.memory import mem_files

        planned = [_plan_memory(f) for f in mem_files(files)]
        return self._send(planned, model=model, branch=branch, message=message,
                          params=params, metrics=metrics, tags=tags, parent=parent, data=data,
                          cwd=cwd, progress=None, lineage=lineage, kind="folder", root=root)

    def run(self, *, model: str, branch: str, **kwargs: Any) -> Run:
        """See Registry.run."""
        from .api.run import Run

        kwargs.pop("isolate", None)  # the server encodes: the run's thread only uploads
        return Run(self, model=model, branch=branch, **kwargs)  # type: ignore[arg-type]

    def _send(self, planned: list[tuple[FileEntry, list[_Part]]], *, model: str,
              branch: str | None, message: str, params: dict[str, Any] | None,
              metrics: dict[str, Any] | None, tags: Sequence[str], parent: str | None,
              data: Sequence[str | Path], cwd: str | Path | None,
              progress: Callable[[int, int], None] | None, lineage: dict[str, Any] | None,
              kind: str, root: bool) -> VersionRow:
        captured = capture(Path(cwd or Path.cwd()), [Path(d) for d in data])
        lineage = with_extra(captured, lineage)
        base = None if root else self._base(model, branch or DEFAULT_BRANCH, parent)
        entries = [e for e, _ in planned]
        parts = [x for _, file_parts in planned for x in file_parts]
        missing = set(self._post(f"/models/{self._q(model)}/uploads/missing",
                                 {"ids": list(dict.fromkeys(x.oid for x in parts))})["missing"])
        todo = list({x.oid: x for x in parts if x.oid in missing}.values())
        total = sum(x.seg.length for x in todo)
        tally = _Tally(total, progress)
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            for _ in pool.map(lambda x: self._upload(model, x, base, tally), todo):
                pass
        body = {"files": [e.to_json() for e in entries], "branch": branch, "message": message,
                "params": dict(params or {}), "metrics": dict(metrics or {}),
                "lineage": lineage, "tags": list(tags), "parent": parent, "kind": kind,
                "root": root}
        self.last_upload_bytes = tally.sent  # what this commit sent (tests, progress bars)
        return decode_as(VersionRow, self._post(f"/models/{self._q(model)}/commits", body))

    def _base(self, model: str, branch: str, parent: str | None) -> str | None:
        """The version the server should delta against: the parent, or the branch head,
        or (a new branch) the main branch's head, where the server starts it."""
        if parent is not None:
            return self.resolve(parent).id
        for name in dict.fromkeys((branch, DEFAULT_BRANCH)):
            try:
                return self.resolve(f"{model}@{name}").id
            except NotFound:
                continue
        return None

    def _upload(self, model: str, part: _Part, base: str | None, tally: _Tally) -> None:
        s = part.seg
        what: dict[str, Any] = {"file": part.rel}
        if s.kind == "tensor":
            what.update(dtype=s.dtype, shape=",".join(map(str, s.shape or ())),
                        tensor=s.name, base=base)
        what = {k: v for k, v in what.items() if v is not None}
        segment = "tensor" if s.kind == "tensor" else "blob"
        whole = f"{API}/models/{self._q(model)}/uploads/{part.oid}"
        if s.length <= CHUNK_BYTES:
            self._t.request("PUT", whole, params={"kind": segment, **what},
                            content=bytes(part.read(0, s.length)))
            tally.sent_bytes(s.length)
            tally.held(part.oid, s.length)
            return
        # In chunks into the server's upload session, from what it holds (after an
        # interrupted commit: the rest only). Memory: one chunk.
        session = Session(self._t, part.oid, s.length, model=model, kind="raw",
                          params={"segment": segment, **what})

        def ask() -> int | None:
            held = session.held()
            tally.held(part.oid, s.length if held is None else held)
            return held

        def send(off: int) -> None:
            went = off

            def sent(k: int) -> None:
                nonlocal went
                went += k
                tally.sent_bytes(k)
                tally.held(part.oid, went)

            session.send(off, _pieces(part, off, s.length - off), sent)
            tally.held(part.oid, s.length)

        def send_whole() -> None:
            self._t.request("PUT", whole, params={"kind": segment, **what},
                            content=_pieces(part, 0, s.length),
                            headers={"Content-Length": str(s.length)})
            tally.sent_bytes(s.length)
            tally.held(part.oid, s.length)

        resume(ask, send, send_whole)


class _Tally:
    """Progress of a commit's uploads in bytes the server holds (a resumed segment
    counts what it already had), and the bytes actually sent."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None) -> None:
        self.total, self.progress = total, progress
        self.sent = 0
        self._done = 0
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def sent_bytes(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def held(self, oid: str, pos: int) -> None:
        with self._lock:
            before = self._held.get(oid, 0)
            if pos <= before:
                return
            self._held[oid] = pos
            self._done += pos - before
            done = self._done
        if self.progress:
            self.progress(done, self.total)


def _read_at(path: Path, start: int, offset: int, length: int) -> bytes:
    return _read_range(path, start + offset, length)


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise errors.InvalidModelFile(f"{path} changed while it was being committed; retry")
    return data


def _pieces(part: _Part, offset: int, n: int) -> Iterator[bytes]:
    """N bytes of a segment from OFFSET, a chunk at a time (one in memory)."""
    for off in range(offset, offset + n, CHUNK_BYTES):
        yield bytes(part.read(off, min(CHUNK_BYTES, offset + n - off)))


def _plan_memory(f: MemFile) -> tuple[FileEntry, list[_Part]]:
    """_plan of a file held in memory: each segment hashed where it lies."""
    sha = hashlib.sha256()
    refs, parts = [], []
    for i, s in enumerate(f.plan.segments):
        piece = f.pieces[i]
        sha.update(piece)
        oid = blake3.blake3(piece, max_threads=blake3.blake3.AUTO if s.length >= 1 << 20
                            else 1).hexdigest()
        parts.append(_Part(f.rel, s, oid, partial(f.read, i)))
        refs.append(_ref(s, oid))
    return FileEntry(f.rel, f.plan.size, sha.hexdigest(), f.plan.format, tuple(refs),
                     dict(f.plan.info)), parts


def _ref(s: Segment, oid: str) -> SegmentRef:
    return (SegmentRef(oid, s.length, s.name, s.dtype, s.shape) if s.kind == "tensor"
            else SegmentRef(oid, s.length))


def _plan(rel: str, path: Path) -> tuple[FileEntry, list[_Part]]:
    """Plan a file, hashing each segment (BLAKE3: its object id) and the whole (sha256)
    in one sequential read through one buffer: memory is HASH_PIECE, whatever the
    tensors' sizes (a local commit streams them too)."""
    plan = plan_file(path)
    sha = hashlib.sha256()
    refs, parts = [], []
    buf = bytearray(HASH_PIECE)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        for s in plan.segments:
            h = blake3.blake3(max_threads=blake3.blake3.AUTO if s.length >= 1 << 20 else 1)
            f.seek(s.offset)
            left = s.length
            while left:
                got = f.readinto(view[:min(left, HASH_PIECE)])
                if not got:
                    raise errors.InvalidModelFile(f"{path} changed while it was being "
                                                  "committed; retry")
                sha.update(view[:got])
                h.update(view[:got])
                left -= got
            oid = h.hexdigest()
            parts.append(_Part(rel, s, oid, partial(_read_at, path, s.offset)))
            refs.append(_ref(s, oid))
    return FileEntry(rel, plan.size, sha.hexdigest(), plan.format, tuple(refs),
                     dict(plan.info)), parts
