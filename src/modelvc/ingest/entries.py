"""A commit over HTTP: the raw segments a client uploads are stored here (encoded as a
local commit's would be), then the version's file entries are checked against what
is stored and turned into object rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..codec import dtype_info
from ..errors import CorruptObject, UsageError
from ..manifest import FileEntry, SegmentRef
from ..meta.api import ObjectRow
from ..objects.base import ObjectStore, flush

if TYPE_CHECKING:
    from ..meta.store import MetaStore
    from ..storage import ObjectIO


def store_uploaded(io: ObjectIO, store: ObjectStore, oid: str,
                   read: Callable[[int, int], bytes | memoryview], size: int, *,
                   dtype: str | None, shape: tuple[int, ...] | None, ref: str | None
                   ) -> tuple[bool, int]:
    """Encode and store a raw segment already hashed to OID: a tensor (DTYPE and SHAPE)
    deltas against REF, block by block; a blob is read whole (a segment of a few MiB).
    Durable when this returns. (newly written, stored bytes)."""
    if shape is not None:
        assert dtype is not None
        stored = io.put_tensor_from(read, dtype, shape, ref=ref, oid=oid)
    else:
        stored = io.put_blob(bytes(read(0, size)), oid=oid)
    flush(store, [oid])
    return stored.new, stored.row.stored_size


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
        row = objects[oid] = _row(io, path, s, known.get(oid))
        for c in io.chain_rows(oid) if row.kind == "tensor" else []:
            refs.setdefault(c.id, c)
    new_bytes = sum(o.stored_size for i, o in objects.items() if i not in known)
    return objects, refs, new_bytes


def _row(io: ObjectIO, path: str, s: SegmentRef, known: ObjectRow | None) -> ObjectRow:
    """The segment's row, refused unless the stored object decodes to s.size bytes
    (a tensor segment's dtype and shape must fit that size). The object may be of
    either encoding: its id is of the bytes only, so a byte segment may use a tensor
    object and the reverse, as a local commit's dedup does (storage.py). Stored objects
    always hash to their id (uploads and pushes are verified first)."""
    what = f"{path}: segment {s.id[:12]}"
    if s.tensor is not None:
        try:
            fits = dtype_info(s.dtype or "").itemsize * math.prod(s.shape or ()) == s.size
        except UsageError:
            fits = False
        if not fits:
            raise UsageError(f"{path}: tensor {s.tensor} ({s.dtype}{list(s.shape or ())}) "
                             f"does not fit its {s.size} bytes")
    try:
        # Recorded already: a blob's raw size is known; uploaded, not recorded yet: a
        # blob is at most max_upload_mb, decoded to find its size.
        row = io.row(s.id, known.raw_size if known and known.kind != "tensor" else None)
    except (CorruptObject, ValueError) as exc:
        raise UsageError(f"{what} is not a readable object") from exc
    if row.raw_size != s.size:
        raise UsageError(f"{what} holds {row.raw_size} bytes, not {s.size}")
    return row
