"""The upload sessions route, one for commits and pushes (client: modelvc.client.uploads):

    GET /api/v1/uploads/{id}?model=&kind=&size=          -> {offset, stored}
    PUT /api/v1/uploads/{id}?model=&kind=&size=&offset=  frames -> {offset, complete}

`kind` "object": a stored object being pushed (verified and stored once complete, as
/api/v1/objects/pack does); "raw": a commit's raw segment (`segment` tensor or blob,
`dtype`, `shape`, `file`, `tensor`, `base` say what it is; encoded and stored once
complete, as /models/{m}/uploads/{id} does). A session is a spool per (subject, kind,
id, size) under the registry folder's tmp/uploads (transfer/sessions.py), so a
transfer or commit cut off mid-object resumes from what arrived; an offset beyond what
is held is 409 SessionMoved, a damaged frame 400 ChunkRefused (the frames before it
kept). Both need the writer role on `model`. Sessions untouched for upload_ttl_hours are deleted.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..errors import CorruptObject, ModelvcError, UsageError
from ..objects.base import check_key
from ..transfer.local import local_end
from ..transfer.sessions import Sessions
from ..wire.frames import MAX_REQUEST, FrameReader
from .auth import authorize
from .deps import NAMED, P, R, S, least
from .limits import sent_bytes
from .logs import LOG
from .scope import Scope

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
KINDS = ("object", "raw")


def _check(model: str, kind: str, oid: str, size: int, p: Any, st: Any) -> None:
    authorize(p, "writer", model)
    check_key(oid)
    if kind not in KINDS:
        raise UsageError(f"unknown upload kind {kind!r}: use object or raw")
    if size < 0:
        raise UsageError("an upload's size cannot be negative")
    if kind == "raw" and size > st.config.max_upload_mb << 20:
        from .commits import too_big

        raise too_big(st.config.max_upload_mb << 20)


@router.get("/{oid}")
def held(oid: str, model: str, kind: str, size: int, request: Request, p: P, reg: R,
         st: S) -> dict[str, Any]:
    """How many bytes of the caller's session for (KIND, OID, SIZE) the server holds.
    `stored`: the object is here and the caller may count it (no other model hides
    it, or the caller proved it holds the bytes): nothing to send."""
    _check(model, kind, oid, size, p, st)
    if reg.held_objects([oid]) and (
            oid not in Scope(reg, p, [oid]).hidden()
            or (kind == "object" and not st.possession.unproven(p.name, [oid]))):
        return {"offset": size, "stored": True}
    offset = upload_sessions(request).offset(p.name, kind, oid, size)
    if offset:
        LOG.info("upload resumed", extra={"object": oid, "size": size, "offset": offset,
                                          "subject": p.name, "kind": kind})
    return {"offset": offset, "stored": False}


@router.put("/{oid}", dependencies=[least("writer", on=NAMED)])
async def put_chunks(oid: str, model: str, kind: str, size: int, offset: int,
                     request: Request, p: P, reg: R, st: S, segment: str = "blob",
                     dtype: str | None = None, shape: str = "", file: str = "",
                     tensor: str | None = None, base: str | None = None) -> dict[str, Any]:
    """Append the body's frames from OFFSET; once SIZE bytes are held, the whole is
    verified and stored (or the session discarded: CorruptObject). An empty body asks
    for just that."""
    _check(model, kind, oid, size, p, st)
    from .commits import finish_raw, shape_of

    if kind == "raw":
        shape_of(segment, dtype, shape, size, tensor or oid[:12])  # refused before the bytes
    sessions = upload_sessions(request)
    pos = await receive_frames(request, sessions, p.name, kind, oid, size, offset)
    if pos < size:
        return {"offset": pos, "complete": False}
    out: dict[str, Any] = {}
    try:
        if kind == "raw":
            out, seen = await run_in_threadpool(
                finish_raw, reg, sessions, p.name, model, oid, size, segment, dtype, shape,
                file, tensor, base)
        else:
            with sent_bytes():  # a spool that fails verification is the client's (400)
                seen = await run_in_threadpool(local_end(reg).finish, sessions, p.name,
                                               oid, size)
    except CorruptObject as exc:
        LOG.warning("upload failed verification", extra={
            "object": oid, "size": size, "subject": p.name, "kind": kind,
            "error": exc.message})
        raise
    log_complete(p.name, kind, oid, size, seen)
    await run_in_threadpool(st.possession.add, p.name, [oid])
    return {**out, "offset": size, "complete": True}


_SESSIONS_LOCK = threading.Lock()


def upload_sessions(request: Request) -> Sessions:
    """The server's upload sessions: tmp/uploads in the served registry's folder (shared
    by server processes on that folder), expiring after upload_ttl_hours."""
    app_state = request.app.state
    with _SESSIONS_LOCK:
        sessions: Sessions | None = getattr(app_state, "upload_sessions", None)
        if sessions is None:
            state = app_state.modelvc
            sessions = Sessions(state.registry().scratch("uploads"),
                                ttl=state.config.upload_ttl_hours * 3600)
            app_state.upload_sessions = sessions
        return sessions


async def receive_frames(request: Request, sessions: Sessions, subject: str, kind: str,
                         oid: str, size: int, offset: int) -> int:
    """Append the frames of the request body to SUBJECT's session from OFFSET, each as
    it arrives; what the session holds afterwards. After an error (a frame that does
    not match its digest, an offset beyond what is held) the rest of the body is read
    and dropped before the error is answered, so the client gets the answer rather
    than a reset connection; every frame before it is kept."""
    if int(request.headers.get("content-length") or 0) > MAX_REQUEST:
        raise UsageError(f"an upload request is at most {MAX_REQUEST} bytes",
                         hint="send at most 64 MiB per request")
    reader = FrameReader()
    pos, appended, total = offset, False, 0
    error: ModelvcError | None = None
    async for piece in request.stream():
        total += len(piece)
        if total > MAX_REQUEST:
            raise UsageError(f"an upload request is at most {MAX_REQUEST} bytes")
        if error is not None:
            continue
        try:
            for data, claimed in reader.feed(piece):
                pos = await run_in_threadpool(append_chunk, sessions, subject, kind, oid,
                                              size, pos, data, claimed)
                appended = True
        except ModelvcError as exc:
            error = exc
    if error is not None:
        raise error
    reader.close()
    if not appended:  # an empty body: completes what is there, or says what that is
        return await run_in_threadpool(sessions.offset, subject, kind, oid, size)
    return pos


def append_chunk(sessions: Sessions, subject: str, kind: str, oid: str, size: int,
                 offset: int, data: bytes, digest: str) -> int:
    """Sessions.append, logging a refused (damaged) chunk."""
    try:
        return sessions.append(subject, kind, oid, size, offset, data, digest)
    except CorruptObject as exc:
        LOG.warning("upload chunk refused", extra={
            "object": oid, "offset": offset, "length": len(data), "subject": subject,
            "kind": kind, "error": exc.message})
        raise


def log_complete(subject: str, kind: str, oid: str, size: int, seen: Any) -> None:
    """One line per completed upload session: `received` is what this process took in
    (less than `size` when an earlier process or attempt held the start)."""
    LOG.info("upload complete", extra={
        "object": oid, "size": size, "subject": subject, "kind": kind,
        "received": seen.received if seen else 0,
        "resumed_from": seen.first_offset if seen else size})
