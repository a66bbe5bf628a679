"""Object rows for file entries whose segments were stored by someone else (a client's
raw uploads over HTTP): each checked against what the entry declares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CorruptObject, UsageError
from ..manifest import FileEntry, SegmentRef
from ..meta.api import ObjectRow
from ..meta.store import MetaStore
from ..objects.base import ObjectStore

if TYPE_CHECKING:
    from ..storage import ObjectIO


def segment_ids(files: tuple[FileEntry, ...]) -> dict[str, tuple[str, SegmentRef]]:
    """Every segment id -> (file path, segment), refusing entries whose segment sizes
    do not add up to the file's size."""
    segs: dict[str, tuple[str, SegmentRef]] = {}
    for f in files:
        if sum(s.size for s in f.segments) != f.size:
            raise UsageError(f"{f.path}: segment sizes do not add up to {f.size}")
        for s in f.segments:
            segs.setdefault(s.id, (f.path, s))
    return segs


def rows_for(meta: MetaStore, io: ObjectIO, store: ObjectStore, files: tuple[FileEntry, ...]
             ) -> tuple[dict[str, ObjectRow], dict[str, ObjectRow], int]:
    """Rows for every segment (all must be stored, as what the file list says they are),
    their delta references, and the stored bytes no recorded version held before."""
    segs = segment_ids(files)
    known = meta.get_objects(segs)
    objects: dict[str, ObjectRow] = {}
    refs: dict[str, ObjectRow] = {}
    for oid, (path, s) in segs.items():
        objects[oid] = _row(io, store, path, s, known.get(oid))
        for c in io.chain_rows(oid) if s.tensor is not None else []:
            refs.setdefault(c.id, c)
    new_bytes = sum(o.stored_size for i, o in objects.items() if i not in known)
    return objects, refs, new_bytes


def _row(io: ObjectIO, store: ObjectStore, path: str, s: SegmentRef, known: ObjectRow | None
         ) -> ObjectRow:
    """The segment's row, refused unless the stored object is what the file list
    declares: a blob of s.size bytes, or a tensor of that dtype, shape and size.
    Stored objects always hash to their id (uploads and pushes are verified first)."""
    what = f"{path}: segment {s.id[:12]}"
    if known is not None and known.kind != ("tensor" if s.tensor is not None else "blob"):
        raise UsageError(f"{what} is a {known.kind} object, not what the file list says")
    if s.tensor is None:
        if known is not None:  # recorded already: its raw size is known
            raw = known.raw_size
        else:  # uploaded, not recorded yet: a segment is at most max_upload_mb
            try:
                raw = len(io.read_blob(s.id))
            except (CorruptObject, ValueError) as exc:  # e.g. a tensor object named as bytes
                raise UsageError(f"{what} is not a byte segment") from exc
        if raw != s.size:
            raise UsageError(f"{what} holds {raw} bytes, not {s.size}")
        return ObjectRow(s.id, "blob", "zstd", s.size, store.size(s.id))
    try:
        h = io.header(s.id)
    except (CorruptObject, ValueError) as exc:
        raise UsageError(f"{what} is not a tensor object") from exc
    if h.raw_size != s.size or h.dtype != s.dtype or tuple(h.shape) != tuple(s.shape or ()):
        raise UsageError(f"{path}: tensor {s.tensor} does not match object {s.id[:12]} "
                         f"({h.dtype}{list(h.shape)}, {h.raw_size} bytes)")
    return ObjectRow(s.id, "tensor", h.codec, h.raw_size, store.size(s.id), h.ref)
