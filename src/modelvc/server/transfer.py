"""Push/pull routes: /api/v1/transfer/* (negotiation, versions, refs) and
/api/v1/objects/* (stored objects, packed or streamed). The client is
modelvc.transfer.http.HttpEnd; the work is modelvc.transfer.local.LocalEnd's.

Every route authenticates, then authorizes per model: reading needs "reader",
sending objects and versions "writer", moving a channel "promoter".
Request bodies are bounded (packs, upload chunks) or streamed to a temp file (whole
objects); objects are verified before they are stored.

A large object arrives in chunks through the upload sessions route (server/uploads.py,
kind "object"), so a push cut off mid-object resumes from what arrived.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..errors import ObjectNotFound, UsageError
from ..ingest.verify import unlink_quietly
from ..objects.base import check_key
from ..transfer.local import LocalEnd, local_end
from ..transfer.protocol import RefInfo, decode_pack, encode_pack
from .auth import Principal, authenticate, authorize, can
from .deps import NAMED, least
from .limits import sent_bytes
from .scope import Scope, not_uploaded, require_access
from .state import ServerState

router = APIRouter(tags=["transfer"])

MAX_PACK = 64 << 20  # a pack body (clients send <= 8 MiB)
MAX_IDS = 200_000


class Ids(BaseModel):
    model: str
    ids: list[str]


class RecordBody(BaseModel):
    model: str
    id: str


class RefBody(BaseModel):
    model: str
    name: str
    kind: str
    version_id: str
    expected: str | None = None
    force: bool = False


def _end(request: Request, role: str, model: str | None) -> tuple[LocalEnd, str]:
    end, principal = _end_as(request, role, model)
    return end, principal.name


def _end_as(request: Request, role: str, model: str | None) -> tuple[LocalEnd, Principal]:
    state: ServerState = request.app.state.modelvc
    principal = authenticate(request, state)
    authorize(principal, role, model)
    return local_end(state.registry()), principal


def _readable(end: LocalEnd, principal: Principal, ids: list[str]) -> None:
    """ObjectNotFound, worded as for an absent object, unless every id is readable."""
    ok = set(Scope(end.reg, principal, ids).readable())
    for oid in ids:
        if oid not in ok:
            raise ObjectNotFound(f"object {oid} not found")


def _ids(body: Ids) -> list[str]:
    if len(body.ids) > MAX_IDS:
        raise UsageError(f"at most {MAX_IDS} ids per request")
    return [check_key(i) for i in body.ids]


@router.get("/api/v1/transfer/models")
def models(request: Request) -> dict[str, Any]:
    end, _ = _end(request, "reader", None)
    return {"models": end.models()}


@router.get("/api/v1/transfer/refs")
def refs(request: Request, model: str) -> dict[str, Any]:
    end, _ = _end(request, "reader", model)
    return {"refs": [{"name": r.name, "kind": r.kind, "version_id": r.version_id}
                     for r in end.refs(model)]}


@router.post("/api/v1/transfer/ancestry", dependencies=[least("reader", on=NAMED)])
def ancestry(request: Request, body: Ids) -> dict[str, Any]:
    end, _ = _end(request, "reader", body.model)
    rows = [v for v in end.ancestry(body.model, _ids(body)) if v.model == body.model]
    return {"versions": [{"id": v.id, "model": v.model, "number": v.number,
                          "parents": list(v.parents)} for v in rows]}


@router.post("/api/v1/transfer/closure", dependencies=[least("reader", on=NAMED)])
def closure(request: Request, body: Ids) -> dict[str, Any]:
    end, _ = _end(request, "reader", body.model)
    ids = _ids(body)
    _same_model(end, body.model, ids)
    return {"objects": [{"id": o.id, "size": o.size, "depth": o.depth}
                        for o in end.closure(body.model, ids)]}


@router.post("/api/v1/transfer/have-versions", dependencies=[least("reader", on=NAMED)])
def have_versions(request: Request, body: Ids) -> dict[str, Any]:
    end, _ = _end(request, "reader", body.model)
    return {"have": sorted(end.has_versions(body.model, _ids(body)))}


@router.post("/api/v1/transfer/versions", dependencies=[least("writer", on=NAMED)])
def record_version(request: Request, body: RecordBody) -> dict[str, Any]:
    end, principal = _end_as(request, "writer", body.model)
    vid = check_key(body.id)
    state = request.app.state.modelvc
    if not end.reg.known_versions([vid]):
        _may_record(end, principal, state, vid)
    else:
        _same_model_or_absent(end, principal, body.model, vid)
    return {"number": end.record_version(body.model, vid, actor=principal.name)}


def _same_model_or_absent(end: LocalEnd, principal: Principal, model: str, vid: str
                          ) -> None:
    """An existing version of another model: refused, and worded as for an unknown id
    unless the caller may read that model (its number and existence must not leak)."""
    v = end.reg.version(vid)
    if v.model == model:
        return
    if can(principal, "reader", v.model):
        raise UsageError(f"version {vid[:12]} belongs to {v.model}, not {model}")
    raise not_uploaded(vid)


def _may_record(end: LocalEnd, principal: Principal, state: ServerState, vid: str) -> None:
    """A pushed version may list (or reach through delta references) another model's
    objects only if the pusher may read them or sent their bytes: knowing ids is not
    enough to graft them into a model others read."""
    require_access(end.reg, principal, state.possession, [vid])
    m = end.reg.manifest_of(vid)
    listed = {s.id for f in m.files for s in f.segments}
    require_access(end.reg, principal, state.possession, listed)
    # Any segment may use a tensor object (ids carry no kind): chain_rows of a blob is [].
    chains = {r.id for oid in listed for r in end.reg.delta_chain(oid)}
    require_access(end.reg, principal, state.possession, chains - set(listed))


@router.post("/api/v1/transfer/refs", dependencies=[least("writer", on=NAMED)])
def update_ref(request: Request, body: RefBody) -> dict[str, Any]:
    if body.kind not in ("branch", "tag", "channel"):
        raise UsageError(f"unknown ref kind {body.kind!r}")
    role = "promoter" if body.kind == "channel" else "writer"
    end, who = _end(request, role, body.model)
    ref = RefInfo(body.model, body.name, body.kind, check_key(body.version_id))
    return {"result": end.update_ref(ref, expected=body.expected, force=body.force, actor=who)}


@router.post("/api/v1/objects/have", dependencies=[least("reader", on=NAMED)])
def have_objects(request: Request, body: Ids) -> dict[str, Any]:
    end, principal = _end_as(request, "reader", body.model)
    have = end.has_objects(body.model, _ids(body))
    scope = Scope(end.reg, principal, have)
    # A writer also sees objects no live version uses yet (a resumed push skips them);
    # other models' objects look absent (the pusher proves it has them by sending).
    if can(principal, "writer", body.model):
        have -= scope.hidden()
    else:
        have = set(scope.readable())
    return {"have": sorted(have)}


@router.post("/api/v1/objects/fetch", dependencies=[least("reader", on=NAMED)])
def fetch(request: Request, body: Ids) -> Response:
    end, principal = _end_as(request, "reader", body.model)
    ids = _ids(body)
    _readable(end, principal, ids)
    items = end.read_pack(body.model, ids)
    return Response(encode_pack(items), media_type="application/octet-stream")


_RANGE = re.compile(r"^bytes=(\d+)-$")


@router.get("/api/v1/objects/{oid}")
def get_object(request: Request, oid: str, model: str) -> Response:
    """The stored bytes; `Range: bytes=N-` (a resumed download) answers 206 from N."""
    end, principal = _end_as(request, "reader", model)
    _readable(end, principal, [check_key(oid)])
    size = end.reg.stored_size(oid)
    m = _RANGE.match(request.headers.get("range", "").strip())
    start = int(m.group(1)) if m else 0
    if start >= size and m:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    headers = {"Content-Length": str(size - start), "Accept-Ranges": "bytes"}
    if m:
        headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    return StreamingResponse(end.read_stream(model, oid, start), status_code=206 if m else 200,
                             media_type="application/octet-stream", headers=headers)


@router.post("/api/v1/objects/pack")
async def put_pack(request: Request, model: str) -> dict[str, Any]:
    end, principal = await run_in_threadpool(_end_as, request, "writer", model)
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_PACK:
        raise UsageError(f"pack of {length} bytes is over the {MAX_PACK}-byte limit")
    body = await request.body()
    if len(body) > MAX_PACK:
        raise UsageError(f"pack is over the {MAX_PACK}-byte limit")
    with sent_bytes():
        items = list(decode_pack(body))
        await run_in_threadpool(end.write_pack, model, items)
    await run_in_threadpool(_state(request).possession.add, principal.name,
                            [oid for oid, _ in items])
    return {"stored": len(items)}


@router.put("/api/v1/objects/{oid}")
async def put_object(request: Request, oid: str, model: str) -> dict[str, Any]:
    end, principal = await run_in_threadpool(_end_as, request, "writer", model)
    check_key(oid)
    fd, name = tempfile.mkstemp(prefix="modelvc-recv-")
    path = Path(name)
    try:
        # The body goes to disk as it arrives: memory stays at one chunk whatever its
        # size, and an interrupted upload leaves only this temp file (removed below).
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
        with sent_bytes():
            await run_in_threadpool(end.write_file, oid, path)
    finally:
        unlink_quietly(path)
    await run_in_threadpool(_state(request).possession.add, principal.name, [oid])
    return {"stored": 1}


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.modelvc
    return state


def _same_model(end: LocalEnd, model: str, ids: list[str]) -> None:
    """A reader of one model must not list another model's objects."""
    for vid in ids:
        v = end.reg.version(vid)
        if v.model != model:
            raise UsageError(f"version {vid[:12]} is not a version of {model}")
