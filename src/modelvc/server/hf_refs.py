"""Hub refs and history on modelvc refs and versions (docs/huggingface.md):

    GET    /api/models/{repo}/refs                   branches and tags (-> targetCommit)
    GET    /api/models/{repo}/commits/{rev}          the version history: message, author
    POST   /api/models/{repo}/branch/{branch}        {startingPoint?} -> a modelvc branch
    DELETE /api/models/{repo}/branch/{branch}
    POST   /api/models/{repo}/tag/{rev}              {tag, message?} -> a modelvc tag
    DELETE /api/models/{repo}/tag/{tag}              refused: modelvc tags are immutable
    POST   /api/models/{repo}/paths-info/{rev}       form: paths=..., expand=...

A Hub branch is a modelvc branch, a Hub tag a modelvc tag, a Hub commit a version (its
sha the first 40 hex of the version id). Channels are revisions clients may read
(`revision="production"`) but not Hub refs: they move only through promote/rollback.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..errors import Conflict
from ..registry import DEFAULT_BRANCH, Registry
from .hf_repo import (
    HfError,
    HfRoute,
    Resolved,
    access,
    commit_sha,
    hub_time,
    resolve,
    tree_entry,
)

router = APIRouter(route_class=HfRoute)


def refs(reg: Registry, repo_id: str, model: str) -> dict[str, Any]:
    rows = reg.refs(model)
    branches = [r for r in rows if r.kind == "branch" and r.version_id]
    tags = [r for r in rows if r.kind == "tag" and r.version_id]

    def item(name: str, kind: str, version_id: str) -> dict[str, Any]:
        return {"name": name, "ref": f"refs/{kind}/{name}",
                "targetCommit": commit_sha(version_id)}

    out = [item(r.name, "heads", r.version_id or "") for r in branches]
    if reg.versions(model) and DEFAULT_BRANCH not in {r.name for r in branches}:
        # `main` always resolves (to the newest version when there is no main branch)
        out.insert(0, item(DEFAULT_BRANCH, "heads",
                           resolve(reg, repo_id, model, "main").version.id))
    return {"branches": out, "converts": [],
            "tags": [item(r.name, "tags", r.version_id or "") for r in tags],
            "pullRequests": []}


def commits(reg: Registry, r: Resolved) -> list[dict[str, Any]]:
    """The version and its ancestors, newest first, as Hub commits."""
    out = []
    for v in reg.log(f"{r.model}@{r.version.id}"):
        title, _, rest = v.message.partition("\n")
        out.append({"id": commit_sha(v.id), "title": title or f"v{v.number}",
                    "message": rest.strip(), "authors": [{"user": v.author}],
                    "date": hub_time(v.created_at),
                    "modelvc": {"version": v.number, "id": v.id}})
    return out


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise HfError(400, "", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise HfError(400, "", "the body must be a JSON object")
    return doc


def _target(model: str, revision: str | None) -> str:
    return model if revision in (None, "", "main") else f"{model}@{revision}"


async def _branch_create(request: Request, repo_id: str, branch: str) -> Response:
    principal, model, reg = access(request, repo_id, "writer")
    body = await _json_body(request)
    start = body.get("startingPoint")
    resolve(reg, repo_id, model, str(start or "main"))  # Hub-style 404s for the start
    try:
        reg.create_branch(model, branch, at=_target(model, start), actor=principal.name)
    except Conflict as exc:
        raise HfError(409, "", f"Reference refs/heads/{branch} already exists "
                      f"({exc.message})") from exc
    return JSONResponse({"name": branch, "ref": f"refs/heads/{branch}"})


async def _branch_delete(request: Request, repo_id: str, branch: str) -> Response:
    principal, model, reg = access(request, repo_id, "writer")
    if branch == DEFAULT_BRANCH:
        raise HfError(403, "", "the main branch cannot be deleted")
    row = _ref(reg, repo_id, model, branch)
    if row != "branch":
        raise HfError(400, "", f"{branch} is a {row}, not a branch")
    reg.delete_ref(model, branch, actor=principal.name, reason="delete_branch (Hub API)")
    return JSONResponse({})


def _ref(reg: Registry, repo_id: str, model: str, name: str) -> str:
    for r in reg.refs(model):
        if r.name == name and r.version_id is not None:
            return r.kind
    raise HfError(404, "RevisionNotFound", f"Invalid rev id: {name}")


async def _tag_create(request: Request, repo_id: str, revision: str) -> Response:
    principal, model, reg = access(request, repo_id, "writer")
    body = await _json_body(request)
    tag = body.get("tag")
    if not isinstance(tag, str) or not tag:
        raise HfError(400, "", 'expected {"tag": NAME, "message"?: ...}')
    r = resolve(reg, repo_id, model, revision)
    try:
        reg.tag(f"{model}@{r.version.id}", tag, actor=principal.name)
    except Conflict as exc:
        raise HfError(409, "", f"Tag {tag} already exists ({exc.message})") from exc
    return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}"})


async def _tag_delete(request: Request, repo_id: str, tag: str) -> Response:
    _, model, reg = access(request, repo_id, "writer")
    kind = _ref(reg, repo_id, model, tag)
    if kind != "tag":
        raise HfError(400, "", f"{tag} is a {kind}, not a tag")
    raise HfError(409, "", f"tag {tag} is immutable in modelvc: a released name never moves "
                  "or disappears (tag the version under a new name instead)")


# Repo ids are one or two segments: each route comes in both shapes.
def _routes(path: str, method: str, fn: Any) -> None:
    async def one(repo: str, name: str, request: Request) -> Response:
        return await fn(request, repo, name)  # type: ignore[no-any-return]

    async def two(org: str, repo: str, name: str, request: Request) -> Response:
        return await fn(request, f"{org}/{repo}", name)  # type: ignore[no-any-return]

    router.add_api_route(f"/api/models/{{repo}}/{path}/{{name}}", one, methods=[method],
                         include_in_schema=False)
    router.add_api_route(f"/api/models/{{org}}/{{repo}}/{path}/{{name}}", two,
                         methods=[method], include_in_schema=False)


_routes("branch", "POST", _branch_create)
_routes("branch", "DELETE", _branch_delete)
_routes("tag", "POST", _tag_create)
_routes("tag", "DELETE", _tag_delete)


async def _paths_info(request: Request, repo_id: str, revision: str) -> Response:
    """The files and folders among `paths` at the revision (missing ones are left out,
    as the Hub does); an empty repo has none."""
    _, model, reg = access(request, repo_id, "reader")
    form = await request.form()
    wanted = [str(p).strip("/") for p in form.getlist("paths")]
    try:
        r = resolve(reg, repo_id, model, revision)
    except HfError as exc:
        if exc.code == "EntryNotFound":  # an empty repo
            return JSONResponse([])
        raise
    return JSONResponse([e for p in wanted if (e := tree_entry(r, p)) is not None])


_routes("paths-info", "POST", _paths_info)
