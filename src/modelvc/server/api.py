"""/api/v1: the Registry API over HTTP (modelvc.remote.RemoteRegistry speaks it).

Every route authenticates, then authorizes against the model it touches before it
reads or changes anything; mutations run as the authenticated principal, so the audit
trail and ref history name who did it. /api/v1/objects/... belongs to transfer.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from ..checkout import reading
from ..errors import NotFound, RefNotFound, UsageError
from ..names import parse_ref, ref_missing
from ..records import UNSET
from ..registry import Registry
from ..wire.values import encode
from . import admin, commits, deployments, governance, hooks
from .auth import authorize, can
from .deps import NAMED, P, R, S, least

router = APIRouter(prefix="/api/v1", tags=["registry"])
router.include_router(commits.router)
router.include_router(admin.router)
router.include_router(hooks.router)
router.include_router(governance.router)
router.include_router(deployments.router)


def model_of(ref: str) -> str:
    return parse_ref(ref).model


def same_model(ref: str, model: str) -> None:
    if model_of(ref) != model:
        raise UsageError(f"{ref} is not a ref of model {model}",
                         hint=f"write {model}@SELECTOR, or use the route of {model_of(ref)}")


# ---- reading
@router.get("/whoami")
def whoami(p: P) -> Any:
    return encode(p)


@router.get("/models")
def models(p: P, reg: R) -> list[str]:
    return [m for m in reg.models() if can(p, "reader", m)]


@router.get("/models/{model}/versions")
def versions(model: str, p: P, reg: R) -> Any:
    authorize(p, "reader", model)
    return encode(reg.versions(model))


@router.get("/resolve")
def resolve(ref: str, p: P, reg: R, deleted: bool = False) -> Any:
    authorize(p, "reader", model_of(ref))
    return encode(reg.resolve(ref, deleted=deleted))


@router.get("/log")
def log(ref: str, p: P, reg: R) -> Any:
    authorize(p, "reader", model_of(ref))
    # A parent may be another model's version (a fork, a pushed manifest): only those
    # of models the caller may read are shown.
    return encode([v for v in reg.log(ref) if can(p, "reader", v.model)])


@router.get("/manifest")
def manifest(ref: str, p: P, reg: R) -> Response:
    """The manifest's canonical bytes: the client checks them against the version id."""
    authorize(p, "reader", model_of(ref))
    v = reg.resolve(ref)
    return Response(reg.manifest_bytes(v.id), media_type="application/json",
                    headers={"X-Version-Id": v.id})


@router.get("/storage")
def storage(ref: str, p: P, reg: R) -> Any:
    authorize(p, "reader", model_of(ref))
    return encode(reg.storage(ref))


@router.get("/models/{model}/refs")
def refs(model: str, p: P, reg: R, kind: str | None = None) -> Any:
    authorize(p, "reader", model)
    return encode(reg.refs(model, kind))


@router.get("/models/{model}/history")
def history(model: str, p: P, reg: R, name: str | None = None) -> Any:
    authorize(p, "reader", model)
    return encode(reg.history(model, name))


@router.get("/models/{model}/at")
def at(model: str, name: str, when: datetime, p: P, reg: R) -> Any:
    authorize(p, "reader", model)
    return encode(reg.at(model, name, when))


@router.get("/diff")
def diff(a: str, b: str, p: P, reg: R, numeric: bool = True) -> Any:
    authorize(p, "reader", model_of(a))
    authorize(p, "reader", model_of(b))
    return encode(reg.diff(a, b, numeric=numeric))


@router.get("/stats")
def stats(p: P, reg: R, model: str | None = None) -> Any:
    authorize(p, "reader", model)
    return encode(reg.stats(model))


@router.get("/audit")
def audit(p: P, reg: R, model: str | None = None, channel: str | None = None,
          actor: str | None = None, action: str | None = None,
          since: datetime | None = None, until: datetime | None = None,
          after: int | None = None, before: int | None = None, limit: int | None = None,
          newest: bool = False) -> Any:
    # The whole trail includes token and role changes: admins only.
    authorize(p, "reader" if model else "admin", model)
    return encode(reg.audit(model=model, channel=channel, actor=actor, action=action,
                            since=since, until=until, after=after, before=before,
                            limit=limit, newest=newest))


@router.get("/audit/verify")
def audit_verify(p: P, reg: R) -> list[str]:
    authorize(p, "admin", None)
    return reg.verify_audit()


def _version(reg: Registry, p: P, version_id: str) -> Any:
    v = reg.version(version_id)
    if not can(p, "reader", v.model):
        # Answered as for an absent id: a refusal naming the model would reveal it.
        raise RefNotFound(f"no version {version_id}", hint="list versions with `modelvc log`")
    if v.deleted_at is not None:
        raise RefNotFound(f"{v.model}@v{v.number} was deleted")
    reg.check_trust(v)
    return v


@router.get("/versions/{version_id}/files/{path:path}")
def file(version_id: str, path: str, p: P, reg: R, check: bool = False) -> StreamingResponse:
    """One file of a version, rebuilt from its objects as it streams. A damaged object
    met mid-stream can only cut the answer short (its status and length went first):
    with `check` (a client's second try after a cut) the file is rebuilt and verified
    before the answer starts, so a damaged object is an error answer naming the
    version and file, with what to do."""
    v = _version(reg, p, version_id)
    entry = reg.manifest(f"{v.model}@{v.id}").file(path)
    if entry is None:
        raise NotFound(f"{v.model}@v{v.number} has no file {path!r}",
                       hint="the manifest lists its files")
    if check:
        with reading(f"{v.model}@v{v.number}, {entry.path}"):
            for _ in reg.file_bytes(entry):
                pass
    return StreamingResponse(reg.file_bytes(entry), media_type="application/octet-stream",
                             headers={"Content-Length": str(entry.size),
                                      "X-Sha256": entry.sha256, "ETag": f'"{entry.sha256}"'})


@router.get("/versions/{version_id}/tensors/{object_id}")
def tensor(version_id: str, object_id: str, p: P, reg: R,
           check: bool = False) -> StreamingResponse:
    """A tensor's raw little-endian bytes, if the version lists it (readers see no other).
    `check`: verified whole before the answer starts, as for a file."""
    v = _version(reg, p, version_id)
    m = reg.manifest(f"{v.model}@{v.id}")
    found = next(((f.path, s.tensor, s.size) for f in m.files for s in f.tensors()
                  if s.id == object_id), None)
    if found is None:
        raise NotFound(f"{v.model}@v{v.number} has no tensor object {object_id[:12]}")
    if check:
        with reading(f"{v.model}@v{v.number}, {found[0]}, tensor {found[1]!r}"):
            for _ in reg.tensor_bytes(object_id):
                pass
    # With its length: a body cut short by a damaged block is then seen as cut (sent
    # chunked, it could end with a proper last chunk, and the connection be reused).
    return StreamingResponse(reg.tensor_bytes(object_id), media_type="application/octet-stream",
                             headers={"Content-Length": str(found[2])})


# ---- refs (writer: branches and tags; promoter: channels)
class BranchIn(BaseModel):
    name: str
    at: str | None = None


@router.post("/models/{model}/branches", dependencies=[least("writer")])
def create_branch(model: str, body: BranchIn, p: P, reg: R) -> Any:
    authorize(p, "writer", model)
    if body.at is not None:
        same_model(body.at, model)
    return encode(reg.create_branch(model, body.name, at=body.at, actor=p.name))


@router.delete("/models/{model}/refs/{name}")
def delete_ref(model: str, name: str, p: P, reg: R, reason: str = "") -> None:
    authorize(p, "reader", model)
    rows = reg.refs(model)
    row = next((r for r in rows if r.name == name), None)
    if row is None:
        raise ref_missing(model, name, [r.name for r in rows])
    # A tag pins a version others may rely on: removing one is an admin's call.
    role = {"channel": "promoter", "tag": "admin"}.get(row.kind, "writer")
    authorize(p, role, model)
    reg.delete_ref(model, name, actor=p.name, reason=reason)


class TagIn(BaseModel):
    ref: str
    name: str


@router.post("/models/{model}/tags", dependencies=[least("writer")])
def tag(model: str, body: TagIn, p: P, reg: R) -> Any:
    authorize(p, "writer", model)
    same_model(body.ref, model)
    return encode(reg.tag(body.ref, body.name, actor=p.name))


class PromoteIn(BaseModel):
    ref: str
    reason: str = ""
    expected: str | None = None
    expected_given: bool = False  # None is a real expectation ("the channel is empty")
    force: bool = False
    create: bool = False  # a channel that does not exist yet is refused unless true (a typo)


@router.post("/models/{model}/channels/{channel}/promote", dependencies=[least("promoter")])
def promote(model: str, channel: str, body: PromoteIn, p: P, reg: R) -> Any:
    authorize(p, "admin" if body.force else "promoter", model)
    same_model(body.ref, model)
    return encode(reg.promote(body.ref, channel, reason=body.reason, actor=p.name,
                              expected=body.expected if body.expected_given else UNSET,
                              force=body.force, create=body.create))


class RollbackIn(BaseModel):
    to: str | None = None
    reason: str = ""


@router.post("/models/{model}/channels/{channel}/rollback", dependencies=[least("promoter")])
def rollback(model: str, channel: str, body: RollbackIn, p: P, reg: R) -> Any:
    authorize(p, "promoter", model)
    return encode(reg.rollback(model, channel, to=body.to, reason=body.reason, actor=p.name))


# ---- maintenance (admin)
class DeleteIn(BaseModel):
    ref: str
    reason: str = ""


@router.post("/versions/delete", dependencies=[least("admin", on=NAMED)])
def delete(body: DeleteIn, p: P, reg: R) -> int:
    authorize(p, "admin", model_of(body.ref))
    return reg.delete(body.ref, reason=body.reason, actor=p.name)


@router.post("/verify")
def verify(p: P, reg: R) -> Any:
    authorize(p, "admin", None)
    return encode(reg.verify())


class GcIn(BaseModel):
    dry_run: bool = True
    grace_seconds: float = Field(default=3600.0, ge=0, allow_inf_nan=False)


@router.post("/gc", dependencies=[least("admin", on=None)])
def gc(body: GcIn, p: P, reg: R, st: S) -> Any:
    authorize(p, "admin", None)
    # Upload records live as long as this server accepts them as proof.
    ttl = timedelta(hours=st.config.upload_ttl_hours)
    return encode(reg.gc(dry_run=body.dry_run, grace_seconds=body.grace_seconds,
                         actor=p.name, upload_ttl=ttl))

