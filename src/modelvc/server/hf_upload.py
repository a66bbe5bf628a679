"""Hub uploads without LFS: create_repo, then upload_folder / upload_file / delete_file.

    POST /api/repos/create                        {name, organization?} -> {"url"} or 409
    POST /api/validate-yaml                       a README.md's front matter (YAML syntax)
    POST /api/models/{repo_id}/preupload/{rev}    every file "regular" (never "lfs": that
                                                  sends hub 2.x to Xet, which we do not speak)
    POST /api/models/{repo_id}/commit/{rev}       ndjson: header, file (base64), deletedFile,
                                                  deletedFolder -> a new version on branch rev
                                                  (read as it arrives: hf_commit.py)
A commit applies its operations to the branch head and records the result as one new
version (Registry.amend: the head's other files are reused as they are, never checked
out, so a README edit to a multi-GB model costs O(KB)); it is made against that exact
head, so a concurrent commit makes it fail with 409 (retry) instead of silently
dropping the other writer's files.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import PathNotFound, RefNotFound, UsageError
from ..registry import DEFAULT_BRANCH, Registry
from .auth import authenticate
from .deps import NAMED, least
from .hf_commit import CommitOps, CommitReader
from .hf_repo import (
    HfError,
    HfRoute,
    access,
    commit_sha,
    no_endpoint,
    public_base,
    resolve,
    split_api_path,
)

router = APIRouter(route_class=HfRoute)


def _bad(message: str) -> HfError:
    return HfError(400, "BadRequest", message)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError) as exc:
        raise _bad(f"the body is not JSON: {exc}") from exc


# The body names the repo: `least` refuses a caller who may write no model before it.
@router.post("/api/repos/create", include_in_schema=False,
             dependencies=[least("writer", on=NAMED)])
async def create_repo(request: Request) -> Response:
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise _bad("expected {\"name\": ..., \"organization\"?: ...}")
    if body.get("type", "model") not in (None, "model"):
        raise _bad("only model repositories are served here")
    org = body.get("organization")
    repo_id = f"{org}/{body['name']}" if org else str(body["name"])
    _, model, reg = access(request, repo_id, "writer")
    url = f"{public_base(request)}/{repo_id}"
    if model in reg.models():
        return JSONResponse({"error": "You already created this model repo", "url": url},
                            status_code=409)
    reg.create_model(model)
    return JSONResponse({"url": url, "name": repo_id, "id": model})


@router.post("/api/validate-yaml", include_in_schema=False)
async def validate_yaml(request: Request) -> Response:
    """huggingface_hub checks a README.md's metadata (its YAML front matter) here before
    uploading it. Only the syntax is checked (the Hub also checks known keys)."""
    authenticate(request, request.app.state.modelvc)
    body = await _json(request)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str):
        raise _bad("expected {\"content\": ..., \"repoType\"?: ...}")
    problem = front_matter_error(content)
    if problem is None:
        return JSONResponse({"errors": [], "warnings": []})
    return JSONResponse({"errors": [{"message": problem}], "warnings": []}, status_code=400,
                        headers={"X-Error-Message": "Invalid metadata in README.md"})


def front_matter_error(content: str) -> str | None:
    """What is wrong with the YAML block between leading '---' lines (None: nothing)."""
    import yaml

    lines = content.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        return "the metadata block opened by '---' is never closed"
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        return f"the metadata is not valid YAML: {exc}"
    if data is not None and not isinstance(data, dict):
        return "the metadata must be a mapping of keys to values"
    return None


@router.post("/api/models/{rest:path}", include_in_schema=False)
async def api_models_post(rest: str, request: Request) -> Response:
    repo_id, marker, tail = split_api_path(rest, ("preupload", "commit"))
    if marker is None or len(tail) != 1:
        raise no_endpoint(f"/api/models/{rest}")
    principal, model, reg = access(request, repo_id, "writer")
    revision = tail[0]
    if request.query_params.get("create_pr") not in (None, "", "0", "false", "False"):
        raise _bad("pull requests are not supported: commit to a branch")
    if marker == "preupload":
        body = await _json(request)
        files = body.get("files", []) if isinstance(body, dict) else []
        if not isinstance(files, list):
            raise _bad('expected {"files": [{"path": ...}, ...]}')
        return JSONResponse({"files": [
            {"path": f.get("path"), "uploadMode": "regular", "shouldIgnore": False}
            for f in files if isinstance(f, dict)
        ]})
    with tempfile.TemporaryDirectory(prefix="modelvc-hf-commit-") as tmp:
        reader = CommitReader(Path(tmp))
        async for piece in request.stream():  # never whole: hf_commit.py
            reader.feed(piece)
        ops = reader.close()
        version = await run_in_threadpool(_commit, reg, repo_id, model, revision, ops,
                                          principal.name)
    sha = commit_sha(version)
    return JSONResponse({"commitUrl": f"{public_base(request)}/{repo_id}/commit/{sha}",
                         "commitOid": sha, "pullRequestUrl": None, "success": True})


def _commit(reg: Registry, repo_id: str, model: str, revision: str, ops: CommitOps,
            author: str) -> str:
    """Parent files + operations -> one new version on branch REVISION; its id."""
    branch = DEFAULT_BRANCH if revision == "main" else revision
    refs = {r.name: r for r in reg.refs(model)}
    ref = refs.get(branch)
    if ref is not None and ref.kind != "branch":
        raise _bad(f"{revision} is a {ref.kind}: commit to a branch, then promote or tag")
    head = None
    if ref is not None and ref.version_id is not None:
        head = resolve(reg, repo_id, model, branch).version.id
    elif reg.versions(model) and revision != "main":
        # A new branch: like the Hub, the revision must exist; modelvc would create it.
        raise HfError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    if ops.parent is not None and (head is None or not head.startswith(ops.parent)):
        raise HfError(412, "PreconditionFailed",
                      f"parentCommit {ops.parent} is not the head of {revision}")
    try:
        v = reg.amend(model, branch=branch, parent=f"{model}@{head}" if head else None,
                      add=ops.add, delete=ops.delete, delete_folders=ops.delete_dirs,
                      message=ops.message, author=author)
    except PathNotFound as exc:  # a deleted file the parent does not hold
        raise HfError(404, "EntryNotFound", exc.message) from exc
    except RefNotFound as exc:  # the head was deleted meanwhile
        raise HfError(409, "Conflict", exc.message) from exc
    except UsageError as exc:
        raise _bad(exc.message) from exc
    return v.id
