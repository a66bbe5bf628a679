"""Hub account and listing endpoints (docs/huggingface.md):

    GET    /api/whoami-v2            the token's subject and what it may do
    GET    /api/models               list_models: search, author, sort, direction, limit
    DELETE /api/repos/delete         refused for a model with history (see below)
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..errors import Unauthenticated
from ..meta.auth import ROLES
from .auth import authenticate, authorize, can, role_on
from .deps import NAMED, least
from .hf_repo import (
    EmptyRepo,
    HfError,
    HfRoute,
    access,
    hub_time,
    repo_id_of,
    repo_not_found,
    resolve,
    server_state,
)

router = APIRouter(route_class=HfRoute)


@router.get("/api/whoami-v2", include_in_schema=False)
def whoami(request: Request) -> Response:
    principal = authenticate(request, server_state(request))
    if principal.anonymous:
        raise Unauthenticated("whoami needs an API token",
                              hint="set HF_TOKEN to a modelvc API token")
    best = role_on(principal, "*")
    wide = max([best, *(ROLES.index(r) for r in principal.bindings.values())])
    return JSONResponse({
        "type": "user", "id": principal.name, "name": principal.name,
        "fullname": principal.name, "email": None, "emailVerified": False,
        "isPro": False, "orgs": [],
        "auth": {"type": "access_token", "accessToken": {
            "displayName": principal.token_id or principal.name,
            "role": "write" if wide >= ROLES.index("writer") else "read"}},
        "modelvc": {"roles": principal.bindings,
                    "token_scopes": principal.caps}})


_SORTS = {"lastModified", "createdAt", "id", "modelId", "downloads", "likes",
          "trendingScore"}


@router.get("/api/models", include_in_schema=False)
def list_models(request: Request, search: str = "", author: str = "",
                sort: str = "lastModified", direction: str = "-1",
                limit: int | None = None) -> Response:
    """Every model the caller may read, as Hub model infos (no siblings). `downloads`,
    `likes` and `trendingScore` are 0 here, so sorting by them keeps the id order."""
    principal = authenticate(request, server_state(request))
    if sort not in _SORTS:
        raise HfError(400, "", f"sort must be one of {sorted(_SORTS)}, got {sort!r}")
    if limit is not None and limit < 0:
        raise HfError(400, "", "limit must be >= 0")
    reg = server_state(request).registry()
    private = not server_state(request).config.anonymous_read
    rows: list[dict[str, Any]] = []
    for model in reg.models():
        repo_id = repo_id_of(model)
        org = repo_id.partition("/")[0] if "/" in repo_id else ""
        if search.lower() not in repo_id.lower() or (author and author != org):
            continue
        if not can(principal, "reader", model):
            continue
        try:
            r = resolve(reg, repo_id, model, "main")
            sha, when = r.sha, hub_time(r.version.created_at)
        except EmptyRepo:
            sha, when = None, None
        rows.append({"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": sha,
                     "lastModified": when, "createdAt": when, "private": private,
                     "downloads": 0, "likes": 0, "trendingScore": 0, "tags": []})
    key = "id" if sort in ("downloads", "likes", "trendingScore", "modelId") else sort
    rows.sort(key=lambda m: m[key] or "", reverse=direction == "-1" and key != "id")
    return JSONResponse(rows[:limit] if limit is not None else rows)


@router.delete("/api/repos/delete", include_in_schema=False,
               dependencies=[least("reader", on=NAMED)])
async def delete_repo(request: Request) -> Response:
    """A repository with versions is never deleted through the Hub API: modelvc keeps a
    model's history (its audit chain names every version). A missing repo is a
    RepoNotFound to whoever may read its name (so delete_repo(missing_ok=True) passes
    for a writer too): hence the least role checked before the body is reader, and
    admin is checked on the model the body names."""
    try:
        body = json.loads(await request.body())
        name, org = body["name"], body.get("organization")
    except (ValueError, KeyError, TypeError) as exc:
        raise HfError(400, "", f'expected {{"name": ..., "organization"?: ...}}: {exc}'
                      ) from exc
    repo_id = f"{org}/{name}" if org else str(name)
    principal, model, reg = access(request, repo_id, "reader")
    if model not in reg.models():
        raise repo_not_found(repo_id)
    authorize(principal, "admin", model)
    n = len(reg.versions(model))
    raise HfError(403, "", f"{repo_id} is a modelvc model with {n} version(s) and its "
                  "history is kept: delete versions with `modelvc delete "
                  f"{model}@vN` (admin), or leave the repository in place")
