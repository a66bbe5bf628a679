"""Commit over HTTP: the client uploads only the raw segments the server lacks, then
asks it to record a version from a list of files made of segment ids.

The server encodes every upload itself (delta against the parent's same-named tensor,
exactly like a local commit) and builds the manifest, so the version id, the stored
bytes and the audit entry are all computed here, as the authenticated principal.

A segment larger than one chunk goes up in chunks into an upload session of kind
"raw" (server/uploads.py, the route pushes use too), so a commit cut off in the middle
of a multi-GB tensor resumes from what arrived; the request that completes it has the
whole hashed against the id, then encoded and stored here (finish_raw).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from typing import Any

import blake3
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..codec import dtype_info
from ..errors import DamagedUpload, UsageError
from ..ingest.entries import segment_ids
from ..manifest import FileEntry
from ..names import parse_ref
from ..objects.base import check_key
from ..registry import Registry
from ..transfer.sessions import Received, Sessions
from ..wire.values import encode
from .auth import authorize
from .deps import P, R, S, least
from .logs import LOG
from .scope import Scope, require_access

router = APIRouter(prefix="/models/{model}", tags=["commit"], dependencies=[least("writer")])


class IdsIn(BaseModel):
    ids: list[str] = Field(max_length=1_000_000)


@router.post("/uploads/missing")
def missing(model: str, body: IdsIn, p: P, reg: R) -> dict[str, list[str]]:
    """Which of these object ids the server does not hold (upload only those)."""
    authorize(p, "writer", model)
    ids = list(dict.fromkeys(body.ids))
    held = reg.held_objects(ids)
    # Another model's object (one this writer may not read) is reported missing: its
    # existence must not leak, and the upload proves the writer has its bytes.
    have = set(held) - Scope(reg, p, held).hidden()
    return {"missing": [i for i in ids if i not in have]}


@router.put("/uploads/{object_id}")
async def upload(model: str, object_id: str, request: Request, p: P, reg: R, st: S,
                 kind: str = "blob", dtype: str | None = None, shape: str = "",
                 file: str = "", tensor: str | None = None, base: str | None = None
                 ) -> dict[str, Any]:
    """One raw segment (a tensor's little-endian bytes, or a byte segment/chunk).
    Up to upload_spool_mb it is held in memory; beyond, it streams to a temp file, so
    memory stays bounded whatever the tensor's size. Hashed as it arrives."""
    authorize(p, "writer", model)
    check_key(object_id)
    limit = st.config.max_upload_mb << 20
    spool = st.config.upload_spool_mb << 20
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_big(limit)
    hasher = blake3.blake3()
    buf = bytearray()
    n = 0
    tmp: Any = None
    with contextlib.ExitStack() as stack:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:  # a chunked body has no content-length to refuse up front
                raise too_big(limit)
            hasher.update(chunk)
            if tmp is None and n > spool:
                tmp = stack.enter_context(tempfile.TemporaryFile(prefix="modelvc-upload-"))
                tmp.write(buf)
                buf = bytearray()
            if tmp is not None:
                tmp.write(chunk)
            else:
                buf += chunk
        if hasher.hexdigest() != object_id:
            raise DamagedUpload(f"upload {object_id[:12]} does not match its id "
                                "(damaged in transit?)", hint="retry the commit")
        if tmp is not None:
            tmp.flush()
        data = _Body(bytes(buf) if tmp is None else None, tmp, n)
        out = await run_in_threadpool(_store, reg, model, object_id, data, kind, dtype,
                                      shape, file, tensor, base)
        await run_in_threadpool(st.possession.add, p.name, [object_id])
        return {**out, "spooled": tmp is not None}


def finish_raw(reg: Registry, sessions: Sessions, subject: str, model: str, oid: str,
               size: int, kind: str, dtype: str | None, shape: str, file: str,
               tensor: str | None, base: str | None
               ) -> tuple[dict[str, Any], Received | None]:
    """Hash the complete spool against the id, then encode and store it. A mismatch
    discards the session (the segment restarts at byte 0); a failed store keeps it
    for the retried commit (Sessions.complete)."""
    with sessions.complete(subject, "raw", oid, size) as path:
        seen = sessions.seen(subject, "raw", oid, size)
        if sessions.digest(path) != oid:
            LOG.warning("upload failed verification", extra={
                "object": oid, "size": size, "subject": subject, "kind": "raw"})
            raise DamagedUpload(f"upload {oid[:12]} does not match its id (damaged in "
                                "transit?); its chunks were discarded",
                                hint="retry the commit: the segment is sent again whole")
        with path.open("rb") as f:
            out = _store(reg, model, oid, _Body(None, f, size), kind, dtype, shape, file,
                         tensor, base)
    return out, seen


def too_big(limit: int) -> UsageError:
    return UsageError(f"segment larger than the server's max_upload_mb ({limit >> 20} MiB)",
                      hint="raise max_upload_mb in the server config")


class _Body:
    """An upload, already checked against its id: in memory, or in a temp file."""

    def __init__(self, mem: bytes | None, file: Any, size: int) -> None:
        self.mem, self.file, self.size = mem, file, size

    def read(self, off: int, n: int) -> bytes | memoryview:
        if self.mem is not None:
            return memoryview(self.mem)[off:off + n]
        return os.pread(self.file.fileno(), n, off)


def _store(reg: Registry, model: str, oid: str, body: _Body, kind: str, dtype: str | None,
           shape_text: str, file: str, tensor: str | None, base: str | None) -> dict[str, Any]:
    shape = shape_of(kind, dtype, shape_text, body.size, tensor or oid[:12])
    new, stored = reg.store_segment(oid, body.read, body.size, model=model, dtype=dtype,
                                    shape=shape, file=file, tensor=tensor, base=base)
    return {"id": oid, "new": new, "stored_size": stored}


def shape_of(kind: str, dtype: str | None, shape_text: str, size: int, what: str
           ) -> tuple[int, ...] | None:
    """A tensor upload's shape, checked against its SIZE in bytes; None for a blob."""
    if kind == "blob":
        return None
    if kind != "tensor":
        raise UsageError(f"unknown upload kind {kind!r}: use tensor or blob")
    if dtype is None:
        raise UsageError("a tensor upload needs dtype and shape")
    try:
        shape = tuple(int(x) for x in shape_text.split(",") if x)
    except ValueError as exc:
        raise UsageError(f"malformed shape {shape_text!r}") from exc
    n = 1
    for d in shape:
        n *= d
    if n * dtype_info(dtype).itemsize != size:
        raise UsageError(f"tensor {what}: {size} bytes do not fit {dtype}{list(shape)}")
    return shape


class CommitIn(BaseModel):
    files: list[dict[str, Any]]
    kind: str = "folder"
    branch: str | None = None
    message: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent: str | None = None  # an explicit parent ref: fail (RefMoved) if not the head
    root: bool = False  # no parent: a new branch starting a new line


@router.post("/commits")
def record(model: str, body: CommitIn, p: P, reg: R, st: S) -> Any:
    authorize(p, "writer", model)
    if body.parent is not None:  # a parent is read (log shows it): it must be readable
        authorize(p, "reader", parse_ref(body.parent).model)
    try:
        files = tuple(FileEntry.from_json(f) for f in body.files)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"malformed file list: {exc}") from exc
    # Stored, and not another model's the writer may neither read nor has sent.
    require_access(reg, p, st.possession, segment_ids(files), "segment")
    row = reg.commit_entries(files, model=model, branch=body.branch, message=body.message,
                             params=body.params, metrics=body.metrics, lineage=body.lineage,
                             kind=body.kind, tags=body.tags, parent=body.parent,
                             author=p.name, root=body.root)
    return encode(row)


class AmendIn(BaseModel):
    branch: str | None = None
    parent: str | None = None  # must be the branch head (RefMoved otherwise)
    message: str = ""
    add: dict[str, str] = Field(default_factory=dict)  # path -> base64 bytes
    delete: list[str] = Field(default_factory=list)
    delete_folders: list[str] = Field(default_factory=list)


@router.post("/amend")
def amend(model: str, body: AmendIn, p: P, reg: R) -> Any:
    """RegistryAPI.amend: a new version from the branch head plus these changes (files
    inline, base64; for small edits: the body is parsed whole, so it is capped by
    max_amend_mb, 413 beyond; larger files go up through commits or HF commits)."""
    authorize(p, "writer", model)
    if body.parent is not None:
        authorize(p, "reader", parse_ref(body.parent).model)
    try:
        add = {k: base64.b64decode(v, validate=True) for k, v in body.add.items()}
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"amend: a file in `add` is not valid base64: {exc}") from exc
    row = reg.amend(model, branch=body.branch, parent=body.parent, add=add,
                    delete=body.delete, delete_folders=body.delete_folders,
                    message=body.message, author=p.name)
    return encode(row)
